#include "s3_gc_rounds.h"

#include <cstdlib>
#include <cstring>
#include <ctime>

#include "cairn/s3_store.h"
#include "cairn/status.h"
#include "cairn/strings.h"

namespace cairn::s3 {

absl::StatusOr<Rounds> ListRounds(Client& client, const std::string& prefix) {
  CAIRN_ASSIGN_OR_RETURN(std::vector<std::string> keys, client.List(prefix + "gc/"));
  Rounds out;
  for (const std::string& key : keys) {
    std::string_view k = std::string_view(key).substr(prefix.size() + 3);
    uint64_t id = 0;
    if (k.starts_with("frontends/")) {
      if (ParseHex16(k.substr(10), &id)) out.frontends.emplace(k.substr(10));
      continue;
    }
    if (!k.starts_with("rounds/") || k.size() < 25 || k[23] != '/' ||
        !ParseHex16(k.substr(7, 16), &id) || id == 0) {
      continue;
    }
    const std::string_view what = k.substr(24);
    uint64_t f = 0;
    if (what == "condemned") {
      out.rounds[id].condemned = true;
    } else if (what == "done") {
      out.rounds[id].done = true;
    } else if (what.starts_with("answer-") && ParseHex16(what.substr(7), &f)) {
      out.rounds[id].answered.emplace(what.substr(7));
    }
  }
  return out;
}

std::string FormatIds(const std::vector<uint64_t>& ids) {
  std::string s;
  for (uint64_t id : ids) s += Hex16(id) + "\n";
  return s;
}

absl::StatusOr<std::vector<uint64_t>> ParseIds(std::string_view text) {
  std::vector<uint64_t> ids;
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    uint64_t id = 0;
    if (nl != 16 || !ParseHex16(text.substr(0, 16), &id)) {
      return absl::InvalidArgumentError("a line is not a pack id");
    }
    if (ids.size() >= kMaxCondemnedPacks) {
      return absl::InvalidArgumentError(StrCat("more than ", kMaxCondemnedPacks, " packs"));
    }
    ids.push_back(id);
    text.remove_prefix(17);
  }
  return ids;
}

std::string FormatDigests(const std::vector<Digest>& digests) {
  std::string s;
  s.reserve(digests.size() * sizeof(Digest));
  for (const Digest& d : digests) s.append(reinterpret_cast<const char*>(d.data()), d.size());
  return s;
}

void ParseDigests(std::string_view bytes, absl::flat_hash_set<Digest, DigestHash>* out) {
  for (size_t at = 0; at + sizeof(Digest) <= bytes.size(); at += sizeof(Digest)) {
    Digest d;
    std::memcpy(d.data(), bytes.data() + at, d.size());
    out->insert(d);
  }
}

void ParseAnswer(std::string_view bytes, absl::flat_hash_set<Digest, DigestHash>* digests,
                 std::set<uint64_t>* packs) {
  for (size_t at = 0; at + kAnswerEntry <= bytes.size(); at += kAnswerEntry) {
    Digest d;
    uint64_t pack = 0;
    std::memcpy(d.data(), bytes.data() + at, d.size());
    std::memcpy(&pack, bytes.data() + at + d.size(), sizeof(pack));
    digests->insert(d);
    packs->insert(pack);
  }
}

}  // namespace cairn::s3

namespace cairn {

absl::StatusOr<std::vector<std::string>> ListS3Frontends(const S3Options& options) {
  s3::Client client(options);
  CAIRN_ASSIGN_OR_RETURN(s3::Rounds gc, s3::ListRounds(client, options.prefix));
  std::vector<std::string> out;
  for (const std::string& id : gc.frontends) {
    auto body = client.Get(options.prefix + "gc/frontends/" + id);
    std::string line = body.ok() ? body->substr(0, std::min<size_t>(body->find('\n'), 512)) : "";
    std::erase_if(line, [](char c) { return c < ' ' || c > '~'; });  // planted bytes shown safely
    out.push_back(id + "  " + line);
  }
  return out;
}

absl::Status ForgetS3Frontend(const S3Options& options, const std::string& id, bool force) {
  uint64_t n = 0;
  if (!s3::ParseHex16(id, &n)) {
    return absl::InvalidArgumentError("a frontend id is 16 lowercase hex digits: " + id);
  }
  s3::Client client(options);
  CAIRN_ASSIGN_OR_RETURN(s3::Rounds gc, s3::ListRounds(client, options.prefix));
  if (!gc.frontends.contains(id)) {
    return absl::NotFoundError(
        StrCat("no frontend ", id, " is registered in s3://", options.bucket, "/", options.prefix));
  }
  // A frontend rewrites its registration every few minutes while it runs.
  auto body = client.Get(options.prefix + "gc/frontends/" + id);
  if (absl::IsUnavailable(body.status())) return body.status();
  const size_t at = body.ok() ? body->find(" seen=") : std::string::npos;
  const int64_t seen = at == std::string::npos ? 0 : std::atoll(body->c_str() + at + 6);
  const int64_t ago = static_cast<int64_t>(std::time(nullptr)) - seen;
  if (!force && ago < s3::kForgetAfterSeconds) {
    return absl::FailedPreconditionError(
        StrCat("frontend ", id, " said it was running ", ago, " s ago; stop it for good, wait ",
               s3::kForgetAfterSeconds / 60, " minutes (or pass --force once it is stopped), then",
               " forget it: a running frontend registers again"));
  }
  return client.Delete(options.prefix + "gc/frontends/" + id);
}

}  // namespace cairn
