#include "meta_schema.h"

#include <openssl/rand.h>

#include <cstdlib>

#include "cairn/hash.h"
#include "cairn/status.h"
#include "cairn/strings.h"
#include "cairn/verify.h"

namespace cairn::meta {

std::string Key2(std::string_view a, std::string_view b) {
  std::string k(a);
  k.push_back('\0');
  k.append(b);
  return k;
}

std::string SeqKey(uint64_t seq) {
  std::string k(8, '\0');
  for (int i = 7; i >= 0; --i) {
    k[i] = static_cast<char>(seq & 0xff);
    seq >>= 8;
  }
  return k;
}

std::string TrustKey(uint64_t version) {
  std::string v = StrCat(version);
  return StrCat(kTrustPrefix, std::string(20 - std::min<size_t>(20, v.size()), '0'), v);
}

std::string SessionStagedKey(std::string_view digest) {
  return StrCat(kSessionStagedPrefix, digest);
}

std::string PendingKey(std::string_view manifest_digest) {
  return StrCat(kPendingPrefix, manifest_digest);
}

std::string QuotaKey(std::string_view key_id, int64_t utc_day) {
  return StrCat("quota/", key_id, "/", utc_day);
}

std::string YankKey(std::string_view manifest_digest) {
  return StrCat(kYankPrefix, manifest_digest);
}

absl::StatusOr<uint64_t> ParseCounter(std::string_view stored, std::string_view what) {
  uint64_t v = 0;
  if (!ParseInt(stored, &v)) {
    return absl::DataLossError(
        StrCat("stored ", what, " is corrupt ('", stored.substr(0, 32), "' is not a number)"));
  }
  return v;
}

absl::StatusOr<uint64_t> ReadCounter(MetaStore* meta, std::string_view key, uint64_t absent) {
  auto v = meta->Get(Table::kState, key);
  if (absl::IsNotFound(v.status())) return absent;
  if (!v.ok()) return Annotate(v.status(), StrCat("reading ", key));
  return ParseCounter(*v, key);
}

absl::StatusOr<cairn::v1::TagRecord> DecodeStoredTag(std::string_view key, std::string_view value) {
  auto rec = DecodeTagEnvelope(value);
  if (!rec.ok()) {
    std::string shown(key);
    std::replace(shown.begin(), shown.end(), '\0', ':');
    return absl::DataLossError("stored tag record " + shown + " is corrupt");
  }
  return rec;
}

absl::StatusOr<std::optional<StoredTag>> ReadTag(MetaStore* meta, std::string_view name,
                                                 std::string_view tag) {
  const std::string key = Key2(name, tag);
  auto v = meta->Get(Table::kTags, key);
  if (absl::IsNotFound(v.status())) return std::nullopt;
  CAIRN_RETURN_IF_ERROR(v.status());
  CAIRN_ASSIGN_OR_RETURN(cairn::v1::TagRecord rec, DecodeStoredTag(key, *v));
  return StoredTag{std::move(*v), std::move(rec)};
}

absl::StatusOr<std::optional<StoredYank>> ReadYank(MetaStore* meta,
                                                   std::string_view manifest_digest) {
  auto v = meta->Get(Table::kState, YankKey(manifest_digest));
  if (absl::IsNotFound(v.status())) return std::nullopt;
  CAIRN_RETURN_IF_ERROR(v.status());
  auto rec = DecodeYankEnvelope(*v);
  if (!rec.ok()) {
    return absl::DataLossError(StrCat("stored yank record of ", manifest_digest, " is corrupt"));
  }
  return StoredYank{std::move(*v), std::move(*rec)};
}

std::string RandomHex(size_t n) {
  std::string b(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(b.data()), static_cast<int>(n)) != 1) {
    std::abort();  // the CSPRNG failing is not recoverable
  }
  return ToHex(reinterpret_cast<const uint8_t*>(b.data()), n);
}

}  // namespace cairn::meta
