#include "cairn/objects.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include <algorithm>
#include <cmath>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "cairn/chunker.h"
#include "cairn/status.h"
#include "cairn/strings.h"

namespace cairn {

using cairn::v1::ChunkList;
using cairn::v1::Envelope;
using cairn::v1::Manifest;
using cairn::v1::TagRecord;
using cairn::v1::TrustRoot;

std::string SerializeCanonical(const google::protobuf::MessageLite& m) {
  std::string out;
  out.reserve(m.ByteSizeLong());  // also caches sizes for SerializeWithCachedSizes
  {
    google::protobuf::io::StringOutputStream sos(&out);
    google::protobuf::io::CodedOutputStream cos(&sos);
    cos.SetSerializationDeterministic(true);
    m.SerializeWithCachedSizes(&cos);
  }
  return out;
}

void CanonicalizeManifest(Manifest* m) {
  std::sort(m->mutable_files()->begin(), m->mutable_files()->end(),
            [](const auto& a, const auto& b) { return a.path() < b.path(); });
  std::sort(m->mutable_metadata()->begin(), m->mutable_metadata()->end(),
            [](const auto& a, const auto& b) { return a.key() < b.key(); });
}

void CanonicalizeTrustRoot(TrustRoot* t) {
  auto* keys = t->mutable_keys();
  std::sort(keys->begin(), keys->end(),
            [](const auto& a, const auto& b) { return a.key_id() < b.key_id(); });
  std::sort(t->mutable_root_key_ids()->begin(), t->mutable_root_key_ids()->end());
  std::sort(t->mutable_revoked_key_ids()->begin(), t->mutable_revoked_key_ids()->end());
  for (auto& d : *t->mutable_delegations()) {
    std::sort(d.mutable_key_ids()->begin(), d.mutable_key_ids()->end());
  }
  std::sort(t->mutable_delegations()->begin(), t->mutable_delegations()->end(),
            [](const auto& a, const auto& b) { return a.namespace_() < b.namespace_(); });
}

namespace {

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

absl::Status ValidateSegment(std::string_view seg, std::string_view what, std::string_view whole) {
  if (seg.empty() || seg.size() > 64) {
    return absl::InvalidArgumentError(
        StrCat("invalid ", what, " '", whole, "': each part must be 1..64 characters"));
  }
  if (seg[0] == '.' || seg[0] == '-') {
    return absl::InvalidArgumentError(
        StrCat("invalid ", what, " '", whole, "': a part may not start with '.' or '-'"));
  }
  for (char c : seg) {
    if (!IsNameChar(c)) {
      return absl::InvalidArgumentError(
          StrCat("invalid ", what, " '", whole, "': only A-Z a-z 0-9 . _ - are allowed"));
    }
  }
  return absl::OkStatus();
}

template <typename T>
absl::StatusOr<T> ParseLimited(std::string_view bytes, size_t max, std::string_view what) {
  if (bytes.size() > max) {
    return absl::InvalidArgumentError(
        StrCat(what, " is ", bytes.size(), " bytes, over the limit of ", max));
  }
  T m;
  if (!m.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::InvalidArgumentError(StrCat(what, " does not parse (corrupt or truncated)"));
  }
  return m;
}

}  // namespace

namespace {

// Well-formed UTF-8 (no overlongs, surrogates or code points past U+10FFFF):
// what protobuf requires of a string field.
bool ValidUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const size_t n = Utf8SequenceLength(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

}  // namespace

absl::Status ValidatePath(std::string_view path) {
  auto bad = [&](std::string_view why) {
    // Shown as it is when it is UTF-8; else every non-ASCII byte as '?'.
    const bool utf8 = ValidUtf8(path.substr(0, 200));
    std::string shown(path.substr(0, 200));
    for (char& c : shown) {
      auto u = static_cast<unsigned char>(c);
      if (u < 0x20 || (!utf8 && u >= 0x80)) c = '?';
    }
    return absl::InvalidArgumentError(StrCat("unsafe path '", shown, "': ", why));
  };
  if (path.empty()) return bad("empty");
  if (path.size() > kMaxPathBytes) return bad("too long");
  if (path.find('\0') != std::string_view::npos) return bad("contains NUL");
  if (path.find('\\') != std::string_view::npos) return bad("contains a backslash");
  for (char c : path) {
    // Control characters: harmless to the file system, hostile to the
    // terminal that lists the files.
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
      return bad("contains a control character");
  }
  if (!ValidUtf8(path)) return bad("not valid UTF-8 (rename the file)");
  if (path[0] == '/') return bad("absolute");
  for (std::string_view seg : Split(path, '/')) {
    if (seg.empty()) return bad("empty segment");
    if (seg == "." || seg == "..") return bad("'.' or '..' segment");
    if (seg.size() > kMaxPathSegmentBytes) {
      return bad(StrCat("a name is longer than ", kMaxPathSegmentBytes,
                        " bytes, which no Linux file system stores"));
    }
  }
  if (path == ".cairn" || path.starts_with(".cairn/")) return bad("'.cairn/' is reserved");
  return absl::OkStatus();
}

absl::Status ValidateName(std::string_view name) {
  std::vector<std::string_view> parts = Split(name, '/');
  if (parts.size() != 2) {
    return absl::InvalidArgumentError(
        StrCat("invalid name '", name.substr(0, 200), "': want namespace/model"));
  }
  for (auto p : parts) CAIRN_RETURN_IF_ERROR(ValidateSegment(p, "name", name));
  return absl::OkStatus();
}

absl::Status ValidateVersion(std::string_view v) {
  if (v.empty() || v.size() > 128) {
    return absl::InvalidArgumentError("invalid version: must be 1..128 characters");
  }
  if (v[0] == '.') {  // ".", "..": a path component wherever releases land on disk
    return absl::InvalidArgumentError(StrCat("invalid version '", v, "': must not start with '.'"));
  }
  for (char c : v) {
    if (!IsNameChar(c) && c != '+') {
      return absl::InvalidArgumentError(
          StrCat("invalid version '", v, "': only A-Z a-z 0-9 . _ + - are allowed"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateTag(std::string_view t) {
  if (t.empty() || t.size() > 128) {
    return absl::InvalidArgumentError("invalid tag: must be 1..128 characters");
  }
  if (t[0] == '.') {  // ".", "..": the client's store links each tag by name
    return absl::InvalidArgumentError(StrCat("invalid tag '", t, "': must not start with '.'"));
  }
  for (char c : t) {
    if (!IsNameChar(c)) {
      return absl::InvalidArgumentError(
          StrCat("invalid tag '", t, "': only A-Z a-z 0-9 . _ - are allowed"));
    }
  }
  return absl::OkStatus();
}

std::string_view NamespaceOf(std::string_view name) { return name.substr(0, name.find('/')); }

absl::StatusOr<Envelope> ParseEnvelope(std::string_view bytes, size_t max_bytes) {
  CAIRN_ASSIGN_OR_RETURN(Envelope e, ParseLimited<Envelope>(bytes, max_bytes, "envelope"));
  if (e.signatures_size() == 0) return absl::UnauthenticatedError("envelope has no signatures");
  if (e.signatures_size() > static_cast<int>(kMaxSignatures)) {
    return absl::InvalidArgumentError("envelope has too many signatures");
  }
  return e;
}

absl::StatusOr<ChunkList> ParseChunkList(std::string_view bytes) {
  CAIRN_ASSIGN_OR_RETURN(ChunkList cl,
                         ParseLimited<ChunkList>(bytes, kMaxChunkListBytes, "chunk list"));
  for (const auto& c : cl.chunks()) {
    if (c.digest().size() != 32) return absl::InvalidArgumentError("chunk list: bad digest size");
    if (c.length() == 0 || c.length() > kMaxChunkSize) {
      return absl::InvalidArgumentError(
          StrCat("chunk list: chunk length ", c.length(), " out of range"));
    }
  }
  return cl;
}

absl::StatusOr<ChunkList> CheckChunkList(std::string_view bytes, std::string_view root,
                                         uint64_t file_size, std::string_view path) {
  if (DigestName(Sha256Of(bytes)) != root) {
    return absl::DataLossError(
        StrCat("chunk list of ", path, " does not match the signed manifest's ", root));
  }
  CAIRN_ASSIGN_OR_RETURN(ChunkList cl, ParseChunkList(bytes));
  uint64_t total = 0;
  for (const auto& c : cl.chunks()) total += c.length();
  if (total != file_size) {
    // The list is the signed one: the release itself is inconsistent.
    return absl::InvalidArgumentError(
        StrCat("chunk list of ", path, " covers ", total, " bytes, manifest says ", file_size));
  }
  return cl;
}

absl::Status ValidateManifest(const Manifest& m) {
  CAIRN_RETURN_IF_ERROR(ValidateName(m.name()));
  CAIRN_RETURN_IF_ERROR(ValidateVersion(m.version()));
  if (m.files_size() == 0) return absl::InvalidArgumentError("manifest has no files");
  if (m.files_size() > static_cast<int>(kMaxFiles)) {
    return absl::InvalidArgumentError("manifest has too many files");
  }
  absl::flat_hash_set<std::string_view> paths;
  for (int i = 0; i < m.files_size(); ++i) {
    const auto& f = m.files(i);
    CAIRN_RETURN_IF_ERROR(ValidatePath(f.path()));
    if (i > 0 && !(m.files(i - 1).path() < f.path())) {
      return absl::InvalidArgumentError(
          StrCat("manifest files not sorted or duplicate path '", f.path(), "'"));
    }
    paths.insert(f.path());
  }
  // A file may not also be a directory of another file ("a" and "a/b"). Not
  // only sorted neighbours: "a", "a.x", "a/b" sort with "a.x" between.
  for (const auto& f : m.files()) {
    std::string_view p = f.path();
    for (size_t slash = p.find('/'); slash != std::string_view::npos;
         slash = p.find('/', slash + 1)) {
      if (paths.contains(p.substr(0, slash))) {
        return absl::InvalidArgumentError(
            StrCat("manifest path '", p, "' is under file '", p.substr(0, slash), "'"));
      }
    }
  }
  // Files naming one chunk list are copies of one file: they agree on its
  // size. (How far a release may expand is checked at commit, against the
  // distinct chunk bytes.)
  absl::flat_hash_map<std::string_view, uint64_t> list_size;
  for (int i = 0; i < m.files_size(); ++i) {
    const auto& f = m.files(i);
    CAIRN_RETURN_IF_ERROR(ParseDigestName(f.sha256()).status());
    CAIRN_RETURN_IF_ERROR(ParseDigestName(f.root()).status());
    // 16 TiB: more than any chunk list can cover (kMaxChunkListBytes).
    if (f.size() > (uint64_t{1} << 44)) {
      return absl::InvalidArgumentError(StrCat("file ", f.path(), " is larger than 16 TiB"));
    }
    auto [it, added] = list_size.emplace(f.root(), f.size());
    if (!added && it->second != f.size()) {
      return absl::InvalidArgumentError(StrCat("manifest gives chunk list ", f.root(), " of ",
                                               f.path(), " two sizes: ", it->second, " and ",
                                               f.size()));
    }
  }
  for (const auto& p : m.parents()) {
    CAIRN_RETURN_IF_ERROR(ValidateName(p.name()));
    CAIRN_RETURN_IF_ERROR(ParseDigestName(p.manifest_digest()).status());
    if (!cairn::v1::Relation_IsValid(p.relation())) {
      return absl::InvalidArgumentError("manifest parent has an unknown relation");
    }
  }
  if (m.license().size() > 256) return absl::InvalidArgumentError("license too long");
  return absl::OkStatus();
}

absl::StatusOr<Manifest> ParseManifest(std::string_view bytes) {
  CAIRN_ASSIGN_OR_RETURN(Manifest m, ParseLimited<Manifest>(bytes, kMaxManifestBytes, "manifest"));
  CAIRN_RETURN_IF_ERROR(ValidateManifest(m));
  return m;
}

absl::StatusOr<TagRecord> ParseTagRecord(std::string_view bytes) {
  CAIRN_ASSIGN_OR_RETURN(TagRecord t, ParseLimited<TagRecord>(bytes, kMaxTagBytes, "tag record"));
  CAIRN_RETURN_IF_ERROR(ValidateName(t.name()));
  CAIRN_RETURN_IF_ERROR(ValidateTag(t.tag()));
  CAIRN_RETURN_IF_ERROR(ParseDigestName(t.manifest_digest()).status());
  if (t.version() == 0) return absl::InvalidArgumentError("tag record version must be >= 1");
  return t;
}

absl::StatusOr<cairn::v1::YankRecord> ParseYankRecord(std::string_view bytes) {
  CAIRN_ASSIGN_OR_RETURN(auto y,
                         ParseLimited<cairn::v1::YankRecord>(bytes, kMaxYankBytes, "yank record"));
  CAIRN_RETURN_IF_ERROR(ValidateName(y.name()));
  CAIRN_RETURN_IF_ERROR(ParseDigestName(y.manifest_digest()).status());
  if (y.version() == 0) return absl::InvalidArgumentError("yank record version must be >= 1");
  if (y.reason().size() > kMaxYankReasonBytes) {
    return absl::InvalidArgumentError(
        StrCat("yank reason is ", y.reason().size(), " bytes; at most ", kMaxYankReasonBytes));
  }
  if (!ValidUtf8(y.reason())) return absl::InvalidArgumentError("yank reason is not UTF-8");
  if (y.yanked() && y.reason().empty()) {
    return absl::InvalidArgumentError("a yank needs a reason (users see it when they pull)");
  }
  // One printable line on any terminal: no C0 or C1 control, DEL, line or
  // paragraph separator, or bidirectional override.
  const std::string& t = y.reason();
  for (size_t i = 0; i < t.size();) {
    const size_t n = Utf8SequenceLength(t, i);
    uint32_t cp = static_cast<unsigned char>(t[i]);
    if (n == 2) cp = ((cp & 0x1F) << 6) | (static_cast<unsigned char>(t[i + 1]) & 0x3F);
    if (n == 3) {
      cp = ((cp & 0x0F) << 12) | ((static_cast<unsigned char>(t[i + 1]) & 0x3F) << 6) |
           (static_cast<unsigned char>(t[i + 2]) & 0x3F);
    }
    if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029 ||
        (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069)) {
      return absl::InvalidArgumentError(
          "yank reason holds a control character (one printable line is allowed)");
    }
    i += n;
  }
  return y;
}

absl::StatusOr<TrustRoot> ParseTrustRoot(std::string_view bytes) {
  CAIRN_ASSIGN_OR_RETURN(TrustRoot t,
                         ParseLimited<TrustRoot>(bytes, kMaxTrustRootBytes, "trust root"));
  if (t.version() == 0) return absl::InvalidArgumentError("trust root version must be >= 1");
  if (t.root_key_ids_size() == 0) return absl::InvalidArgumentError("trust root has no root keys");
  if (t.root_threshold() == 0 ||
      t.root_threshold() > static_cast<uint32_t>(t.root_key_ids_size())) {
    return absl::InvalidArgumentError("trust root threshold out of range");
  }
  for (const auto& k : t.keys()) {
    if (k.ed25519().size() != 32) return absl::InvalidArgumentError("trust root: bad key size");
  }
  for (const auto& d : t.delegations()) {
    if (ValidateSegment(d.namespace_(), "namespace", d.namespace_()) != absl::OkStatus()) {
      return absl::InvalidArgumentError("trust root: bad delegation namespace");
    }
    if (d.threshold() == 0 || d.threshold() > static_cast<uint32_t>(d.key_ids_size())) {
      return absl::InvalidArgumentError(
          StrCat("trust root: delegation '", d.namespace_(), "' threshold out of range"));
    }
  }
  return t;
}

std::string Ref::ToString() const {
  if (!digest.empty()) return StrCat(name, "@", digest);
  if (!version.empty()) return StrCat(name, "@", version);
  return StrCat(name, ":", tag);
}

absl::StatusOr<Ref> ParseRef(std::string_view ref) {
  Ref r;
  size_t at = ref.find('@');
  size_t colon = ref.find(':');
  if (at != std::string_view::npos) {
    r.name = std::string(ref.substr(0, at));
    std::string_view after = ref.substr(at + 1);
    if (after.find(':') != std::string_view::npos) {
      r.digest = std::string(after);
      CAIRN_RETURN_IF_ERROR(ParseDigestName(r.digest).status());
    } else {
      r.version = std::string(after);
      CAIRN_RETURN_IF_ERROR(ValidateVersion(r.version));
    }
  } else if (colon != std::string_view::npos) {
    r.name = std::string(ref.substr(0, colon));
    r.tag = std::string(ref.substr(colon + 1));
    CAIRN_RETURN_IF_ERROR(ValidateTag(r.tag));
  } else {
    r.name = std::string(ref);
    r.tag = "latest";
  }
  CAIRN_RETURN_IF_ERROR(ValidateName(r.name));
  return r;
}

absl::StatusOr<cairn::v1::Relation> ParseRelation(std::string_view s) {
  if (s == "finetune") return cairn::v1::RELATION_FINETUNE;
  if (s == "quantization") return cairn::v1::RELATION_QUANTIZATION;
  if (s == "adapter") return cairn::v1::RELATION_ADAPTER;
  if (s == "merge") return cairn::v1::RELATION_MERGE;
  if (s == "other") return cairn::v1::RELATION_OTHER;
  return absl::InvalidArgumentError(
      StrCat("unknown relation '", s, "' (want finetune, quantization, adapter, merge or other)"));
}

std::string RelationName(cairn::v1::Relation r) {
  switch (r) {
    case cairn::v1::RELATION_FINETUNE:
      return "finetune";
    case cairn::v1::RELATION_QUANTIZATION:
      return "quantization";
    case cairn::v1::RELATION_ADAPTER:
      return "adapter";
    case cairn::v1::RELATION_MERGE:
      return "merge";
    case cairn::v1::RELATION_OTHER:
      return "other";
    default:
      return "unspecified";
  }
}

absl::StatusOr<uint64_t> ParseSize(const std::string& text) {
  std::string t = text;
  while (!t.empty() && (t.back() == 'B' || t.back() == 'b' || t.back() == 'i')) t.pop_back();
  double mult = 1;
  if (!t.empty()) {
    switch (t.back()) {
      case 'K':
      case 'k':
        mult = 1024.0;
        break;
      case 'M':
      case 'm':
        mult = 1024.0 * 1024;
        break;
      case 'G':
      case 'g':
        mult = 1024.0 * 1024 * 1024;
        break;
      case 'T':
      case 't':
        mult = 1024.0 * 1024 * 1024 * 1024;
        break;
      default:
        break;
    }
    if (mult > 1) t.pop_back();
  }
  char* end = nullptr;
  double v = t.empty() ? -1 : std::strtod(t.c_str(), &end);
  if (t.empty() || end != t.c_str() + t.size() || !(v >= 0) || v * mult > 1e18) {
    return absl::InvalidArgumentError(
        "invalid size '" + text + "': a number of bytes, or with K, M, G or T (powers of 1024)");
  }
  return static_cast<uint64_t>(std::llround(v * mult));
}

}  // namespace cairn
