// The bucket's garbage collection objects (s3_store_gc.cc has the rule):
// listing them, and the bytes of condemned lists, answers and done lists.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "cairn/hash.h"
#include "s3_client.h"
#include "s3_index.h"

namespace cairn::s3 {

// The most packs one round condemns (and a frontend accepts in a
// condemned list): 64 GiB of 16 MiB packs, whose chunks' digests a
// frontend holds in memory while it answers.
constexpr size_t kMaxCondemnedPacks = 4096;

// A frontend seen this lately is not forgotten without --force (it
// rewrites its registration every 5 minutes).
constexpr int64_t kForgetAfterSeconds = 15 * 60;

struct Round {
  bool condemned = false;
  bool done = false;
  std::set<std::string> answered;  // frontend ids
};

struct Rounds {
  std::map<uint64_t, Round> rounds;
  std::set<std::string> frontends;
};

// Everything under PREFIX/gc/; names not of this scheme are ignored.
absl::StatusOr<Rounds> ListRounds(Client& client, const std::string& prefix);

// A condemned list: a 16-hex id and "\n" a pack. InvalidArgument for
// anything else, or more than kMaxCondemnedPacks.
std::string FormatIds(const std::vector<uint64_t>& ids);
absl::StatusOr<std::vector<uint64_t>> ParseIds(std::string_view text);

// An answer: the chunks needed, each with the condemned pack it is read
// from (a 32-byte digest and a native u64 id, back to back). A done list:
// the digests alone.
constexpr size_t kAnswerEntry = sizeof(Digest) + 8;

std::string FormatDigests(const std::vector<Digest>& digests);
void ParseDigests(std::string_view bytes, absl::flat_hash_set<Digest, DigestHash>* out);

void ParseAnswer(std::string_view bytes, absl::flat_hash_set<Digest, DigestHash>* digests,
                 std::set<uint64_t>* packs);

}  // namespace cairn::s3
