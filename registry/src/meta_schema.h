// How a node's metadata is laid out in the MetaStore's tables: every key
// format and every stored value that more than one unit reads, in one place.
//
//   kReleases  name \0 version            -> manifest digest
//   kTags      name \0 tag                -> signed tag envelope
//   kChildren  parent \0 child digest     -> child name \0 version \0 relation
//   kFeed      SeqKey(seq)                -> FeedEvent
//   kState     "node_id", "feed_head", "feed_tail"
//              "cursor/<upstream node id>" -> decimal
//              "trust/<20-digit version>"  -> trust root envelope
//              "pending/<manifest digest>" -> PendingResponse
//              "quota/<key id>/<UTC day>"  -> decimal bytes
//              "session-staged/<digest>"   -> "" (see SessionStagedKey)
//              "yank/<manifest digest>"    -> signed yank envelope (newest)
//              "mirrored/<digest>", "evicted/<digest>" (capacity)
//   kStaging   chunk list digest          -> chunk list (uncommitted)
//              "upload/<session>/..."     -> parts of an upload (kUploadPrefix)
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "cairn/store.h"
#include "cairn/v1/objects.pb.h"

namespace cairn::meta {

inline constexpr std::string_view kNodeId = "node_id";
inline constexpr std::string_view kFeedHead = "feed_head";
inline constexpr std::string_view kFeedTail = "feed_tail";
inline constexpr std::string_view kTrustPrefix = "trust/";
inline constexpr std::string_view kPendingPrefix = "pending/";
inline constexpr std::string_view kSessionStagedPrefix = "session-staged/";
inline constexpr std::string_view kYankPrefix = "yank/";
// "mirrored/<digest>" -> when it was last requested (or committed), as a
// tick (unix microseconds, strictly increasing):
// a release another node sent, which capacity may evict.
inline constexpr std::string_view kMirroredPrefix = "mirrored/";
// "evicted/<digest>" -> "NS/MODEL VERSION": evicted for space (or dropped as
// yanked); the feed and anti-entropy do not fetch it again.
inline constexpr std::string_view kEvictedPrefix = "evicted/";
// kStaging "upload/<session id>/part/<16-hex offset>" and
// "upload/<session id>/envelope": objects uploaded in parts (PutObject).
inline constexpr std::string_view kUploadPrefix = "upload/";

// a \0 b: release, tag and child keys.
std::string Key2(std::string_view a, std::string_view b);
// Big-endian seq: feed keys sort in sequence order.
std::string SeqKey(uint64_t seq);
// "trust/" and the version zero-padded to 20 digits (oldest first in a scan).
std::string TrustKey(uint64_t version);
std::string PendingKey(std::string_view manifest_digest);
// "session-staged/<digest>": a chunk list in kStaging that a publish session
// (not a replication) staged; removed with it when no commit consumed it.
std::string SessionStagedKey(std::string_view digest);
std::string QuotaKey(std::string_view key_id, int64_t utc_day);
std::string YankKey(std::string_view manifest_digest);

// A stored decimal counter. DataLoss when the bytes are not one.
absl::StatusOr<uint64_t> ParseCounter(std::string_view stored, std::string_view what);
// Reads counter `key` of kState: `absent` when it was never written; the
// store's error or DataLoss otherwise.
absl::StatusOr<uint64_t> ReadCounter(MetaStore* meta, std::string_view key, uint64_t absent);

// A stored tag: its envelope bytes as signed and the record inside.
struct StoredTag {
  std::string envelope;
  cairn::v1::TagRecord record;
};
// The one decoder for kTags values. DataLoss naming the key when corrupt.
absl::StatusOr<cairn::v1::TagRecord> DecodeStoredTag(std::string_view key, std::string_view value);
// Tag name:tag: nullopt when there is none; the store's error or DataLoss.
absl::StatusOr<std::optional<StoredTag>> ReadTag(MetaStore* meta, std::string_view name,
                                                 std::string_view tag);

// A stored yank: the envelope as signed and the record inside.
struct StoredYank {
  std::string envelope;
  cairn::v1::YankRecord record;
};
// Release `manifest_digest`'s newest yank record: nullopt when there is
// none; the store's error or DataLoss.
absl::StatusOr<std::optional<StoredYank>> ReadYank(MetaStore* meta,
                                                   std::string_view manifest_digest);

// n random bytes from the CSPRNG, as hex (node ids, challenges, sessions).
std::string RandomHex(size_t n);

}  // namespace cairn::meta
