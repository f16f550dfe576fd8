// Importing a bundle: everything verified against the node's own trust root,
// nothing visible unless the whole bundle checks out.
#include <cstring>

#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "batch_writer.h"
#include "cairn/bundle.h"
#include "cairn/objects.h"
#include "cairn/status.h"
#include "cairn/strings.h"
#include "cairn/verify.h"

namespace cairn {
namespace {

using cairn::v1::ChunkList;
using cairn::v1::Manifest;

constexpr size_t kMaxHeaderBytes = 64 << 10;
// Trust roots newer than the node's, held until the chain is walked: a real
// one is a few KiB, a year of rotations a handful.
constexpr size_t kMaxTrustRoots = 64;
constexpr size_t kMaxTrustBytes = 8 << 20;
constexpr size_t kMaxReleaseRecordBytes =
    kMaxEnvelopeBytes + kMaxTagsPerRelease * (kMaxTagBytes + 8192);
// Chunk bytes stored between two Flush calls (a killed import keeps them).
constexpr uint64_t kFlushEvery = 64 << 20;
constexpr uint64_t kProgressEvery = 16 << 20;

std::string KindName(BundleRecord t) {
  switch (t) {
    case BundleRecord::kHeader:
      return "header";
    case BundleRecord::kTrustRoot:
      return "trust root";
    case BundleRecord::kRelease:
      return "release";
    case BundleRecord::kObject:
      return "chunk list";
    case BundleRecord::kChunk:
      return "chunk";
    case BundleRecord::kEnd:
      return "end";
  }
  return StrCat("unknown type ", static_cast<int>(t));
}

// Walks the chunks the bundle's releases name, in the order an exporter
// writes them: releases in bundle order, files in manifest order, each
// distinct chunk list once. A bundle's chunk records must be a subsequence of
// it (the exporter leaves out repeats and what the receiver holds).
class ChunkCursor {
 public:
  ChunkCursor(Repository* repo, const std::vector<std::string>& roots)
      : repo_(repo), roots_(roots) {}

  // Moves past the next position naming `d`; false when none is left.
  absl::StatusOr<bool> Advance(const Digest& d) {
    const std::string_view want(reinterpret_cast<const char*>(d.data()), d.size());
    for (;;) {
      if (!loaded_) {
        if (list_ >= roots_.size()) return false;
        auto bytes = repo_->GetObjectOrStaged(roots_[list_]);
        if (absl::IsNotFound(bytes.status())) {  // left out: the receiver holds it, or lacks it
          ++list_;
          continue;
        }
        CAIRN_RETURN_IF_ERROR(bytes.status());
        CAIRN_ASSIGN_OR_RETURN(current_, ParseChunkList(*bytes));
        next_ = 0;
        loaded_ = true;
      }
      while (next_ < static_cast<size_t>(current_.chunks_size())) {
        if (current_.chunks(static_cast<int>(next_++)).digest() == want) return true;
      }
      loaded_ = false;
      ++list_;
    }
  }

 private:
  Repository* repo_;
  const std::vector<std::string>& roots_;
  size_t list_ = 0, next_ = 0;
  bool loaded_ = false;
  ChunkList current_;
};

struct Release {
  std::string digest, envelope;
  Manifest manifest;
  std::vector<std::string> tags;  // verified, to apply
  std::vector<std::string> tag_names;
  std::vector<std::string> notes;
  std::string yank;  // verified, to apply
};

class Importer {
 public:
  Importer(Repository* repo, ByteSource* in, const ImportOptions& o)
      : repo_(repo), in_(in), o_(o), clock_(o.clock ? o.clock : repo->clock()) {}

  absl::StatusOr<cairn::v1::ImportResponse> Run() {
    CAIRN_RETURN_IF_ERROR(Next());
    CAIRN_RETURN_IF_ERROR(ReadHeader());
    CAIRN_RETURN_IF_ERROR(ReadTrust());
    CAIRN_RETURN_IF_ERROR(ReadReleases());
    CAIRN_RETURN_IF_ERROR(ReadObjects());
    CAIRN_RETURN_IF_ERROR(ReadChunks());
    CAIRN_RETURN_IF_ERROR(ReadEnd());
    CAIRN_RETURN_IF_ERROR(CheckComplete());
    CAIRN_RETURN_IF_ERROR(repo_->chunks()->Sync());
    CAIRN_RETURN_IF_ERROR(CommitAll());
    resp_.set_bytes_read(consumed_);
    return resp_;
  }

 private:
  // Reads the next record's header into type_/len_ (at the end: type_ 0).
  absl::Status Next() {
    char h[kRecordHeaderBytes];
    CAIRN_ASSIGN_OR_RETURN(size_t k, in_->Read(h, 1));
    if (k == 0) {
      return absl::DataLossError(StrCat("the bundle ends after record ", records_,
                                        " without its end record: it is cut short (a volume "
                                        "missing or truncated?); nothing was imported"));
    }
    CAIRN_RETURN_IF_ERROR(in_->ReadFull(h + 1, 4, "a record header"));
    type_ = static_cast<BundleRecord>(h[0]);
    const auto* u = reinterpret_cast<const unsigned char*>(h + 1);
    len_ = (uint32_t{u[0]} << 24) | (uint32_t{u[1]} << 16) | (uint32_t{u[2]} << 8) | u[3];
    ++records_;
    consumed_ += kRecordHeaderBytes + len_;
    if (o_.progress && consumed_ >= next_progress_) {
      o_.progress(consumed_);
      next_progress_ = consumed_ + kProgressEvery;
    }
    if (o_.cancel != nullptr && o_.cancel->cancelled()) {
      return absl::CancelledError("import interrupted: run it again to resume");
    }
    return absl::OkStatus();
  }

  absl::Status Refuse(std::string_view why) const {
    return absl::InvalidArgumentError(
        StrCat("bundle record ", records_, " (", KindName(type_), "): ", why,
               "; the bundle is refused and nothing from it was made visible"));
  }

  absl::Status Payload(size_t max, std::string* out) {
    if (len_ > max) return Refuse(StrCat("length ", len_, " is above the limit ", max));
    out->resize(len_);
    return in_->ReadFull(out->data(), len_, StrCat("record ", records_));
  }

  absl::Status ReadHeader() {
    if (type_ != BundleRecord::kHeader) return Refuse("a bundle starts with its header");
    std::string b;
    CAIRN_RETURN_IF_ERROR(Payload(kMaxHeaderBytes, &b));
    if (!header_.ParseFromString(b)) return Refuse("the header does not parse");
    if (!o_.bundle_id.empty() && header_.bundle_id() != o_.bundle_id) {
      return Refuse("the header's bundle id is not its volumes'");
    }
    if (header_.format() != kBundleFormat) {
      return Refuse(StrCat("format ", header_.format(), " is not ", kBundleFormat));
    }
    if (header_.releases() == 0 || header_.releases() > kMaxBundleReleases) {
      return Refuse(
          StrCat("it names ", header_.releases(), " releases (1 to ", kMaxBundleReleases, ")"));
    }
    return Next();
  }

  absl::Status ReadTrust() {
    std::vector<std::string> chain;
    // Roots this node already has are dropped as they come (an exporter
    // sends its whole chain unless told the receiver's version); what is
    // kept is bounded.
    const uint64_t have = repo_->trust().root().version();
    size_t held = 0;
    std::string b;
    while (type_ == BundleRecord::kTrustRoot) {
      CAIRN_RETURN_IF_ERROR(Payload(kMaxTrustRootBytes, &b));
      auto env = ParseEnvelope(b, kMaxTrustRootBytes);
      auto root = env.ok() ? ParseTrustRoot(env->payload()) : env.status();
      if (!root.ok()) return Refuse(StrCat("not a trust root: ", root.status().message()));
      if (root->version() > have) {
        held += b.size();
        if (chain.size() >= kMaxTrustRoots || held > kMaxTrustBytes) {
          return Refuse(StrCat("more than ", kMaxTrustRoots, " trust roots or ", kMaxTrustBytes,
                               " bytes of them"));
        }
        chain.push_back(std::move(b));
      }
      CAIRN_RETURN_IF_ERROR(Next());
    }
    if (chain.empty()) return absl::OkStatus();
    // Each root is signed by its predecessor's keys: adopting it is safe
    // whatever else the bundle holds, and its releases may need it.
    auto adopted = repo_->AdoptTrustChain(chain);
    if (!adopted.ok()) {
      return absl::PermissionDeniedError(
          StrCat("the bundle's trust chain does not follow from this node's trust root (version ",
                 repo_->trust().root().version(), "): ", adopted.status().message(),
                 "; nothing was imported"));
    }
    resp_.set_trust_versions_adopted(static_cast<uint32_t>(*adopted));
    return absl::OkStatus();
  }

  absl::Status ReadReleases() {
    const TrustRootView trust = repo_->trust();
    const int64_t now = clock_->NowUnix();
    absl::flat_hash_set<std::string> digests;
    size_t held = 0;
    while (type_ == BundleRecord::kRelease) {
      if (releases_.size() >= header_.releases())
        return Refuse("more releases than the header says");
      std::string b;
      CAIRN_RETURN_IF_ERROR(Payload(kMaxReleaseRecordBytes, &b));
      held += b.size();
      if (held > kMaxBundleReleaseBytes) return Refuse("release records above 64 MiB in all");
      cairn::v1::BundleRelease br;
      if (!br.ParseFromString(b)) return Refuse("does not parse");
      if (br.tag_envelopes_size() > static_cast<int>(kMaxTagsPerRelease)) {
        return Refuse("too many tags");
      }
      Release r;
      auto m = VerifyManifestEnvelope(trust, br.manifest_envelope(), &r.digest);
      if (!m.ok()) {
        return absl::PermissionDeniedError(
            StrCat("bundle record ", records_,
                   ": the release does not verify against this node's trust "
                   "root (version ",
                   trust.root().version(), "): ", m.status().message(),
                   "; the bundle is refused and nothing from it was made visible"));
      }
      r.manifest = std::move(*m);
      if (!digests.insert(r.digest).second) return Refuse("the release is repeated");
      r.envelope = std::move(*br.mutable_manifest_envelope());
      for (auto& t : *br.mutable_tag_envelopes()) {
        auto rec = VerifyTagEnvelope(trust, t, now);
        if (absl::IsFailedPrecondition(rec.status())) {  // expired on the way
          r.notes.push_back(StrCat("a tag was not applied: ", rec.status().message()));
          continue;
        }
        if (!rec.ok()) {
          return absl::PermissionDeniedError(
              StrCat("bundle record ", records_, ": a tag of ", r.manifest.name(),
                     " does not verify: ", rec.status().message(), "; bundle refused"));
        }
        if (rec->name() != r.manifest.name() || rec->manifest_digest() != r.digest) {
          return Refuse("a tag points at another release");
        }
        r.tag_names.push_back(rec->tag());
        r.tags.push_back(std::move(t));
      }
      if (!br.yank_envelope().empty()) {
        auto y = VerifyYankEnvelope(trust, br.yank_envelope());
        if (!y.ok()) {
          return absl::PermissionDeniedError(
              StrCat("bundle record ", records_, ": the yank record of ", r.manifest.name(),
                     " does not verify: ", y.status().message(), "; bundle refused"));
        }
        if (y->manifest_digest() != r.digest) return Refuse("a yank record names another release");
        if (y->yanked()) r.notes.push_back("yanked by its publisher: " + y->reason());
        r.yank = std::move(*br.mutable_yank_envelope());
      }
      releases_.push_back(std::move(r));
      CAIRN_RETURN_IF_ERROR(Next());
    }
    if (releases_.size() != header_.releases()) {
      return Refuse(StrCat("a record (", KindName(type_), ") where release ", releases_.size() + 1,
                           " of the ", header_.releases(), " the header names was expected"));
    }
    // The order chunk records must follow.
    absl::flat_hash_set<std::string> seen;
    for (const auto& r : releases_) {
      for (const auto& f : r.manifest.files()) {
        if (seen.insert(f.root()).second) roots_.push_back(f.root());
      }
    }
    return absl::OkStatus();
  }

  absl::Status ReadObjects() {
    absl::flat_hash_set<std::string> named(roots_.begin(), roots_.end()), got;
    std::string b;
    while (type_ == BundleRecord::kObject) {
      CAIRN_RETURN_IF_ERROR(Payload(kMaxChunkListBytes, &b));
      const std::string digest = DigestName(Sha256Of(b));
      if (!named.contains(digest)) return Refuse("no release in the bundle names this chunk list");
      if (!got.insert(digest).second) return Refuse("the chunk list is repeated");
      auto held = repo_->GetObjectOrStaged(digest);
      if (absl::IsNotFound(held.status())) {
        CAIRN_RETURN_IF_ERROR(repo_->StageReplicatedChunkList(b).status());
      } else if (!held.ok()) {
        return held.status();
      }
      CAIRN_RETURN_IF_ERROR(Next());
    }
    return absl::OkStatus();
  }

  absl::Status ReadChunks() {
    ChunkCursor cursor(repo_, roots_);
    ChunkStore* store = repo_->chunks();
    BatchWriter writer(store, kFlushEvery);
    auto stored = [&](absl::Status st) {
      if (st.ok()) return st;
      return Annotate(st,
                      "storing a chunk (what is stored so far is kept: run the import again "
                      "to resume)");
    };
    while (type_ == BundleRecord::kChunk) {
      if (len_ <= sizeof(Digest) || len_ > sizeof(Digest) + kMaxChunkSize) {
        return Refuse(StrCat("length ", len_, " is not a chunk's"));
      }
      Digest d;
      CAIRN_RETURN_IF_ERROR(in_->ReadFull(reinterpret_cast<char*>(d.data()), d.size(), "a chunk"));
      CAIRN_ASSIGN_OR_RETURN(bool named, cursor.Advance(d));
      if (!named) {
        return Refuse(StrCat(DigestName(d),
                             " is not the next chunk the bundle's releases name "
                             "(records out of order, or a chunk of no release)"));
      }
      const size_t size = len_ - sizeof(Digest);
      ++chunks_;
      chunk_bytes_ += size;
      // Read and hashed here; whether the node holds it already is asked
      // on the writer's thread (the store's lock is held while it writes).
      absl::StatusOr<char*> room = writer.Reserve(size);
      CAIRN_RETURN_IF_ERROR(stored(room.status()));
      CAIRN_RETURN_IF_ERROR(in_->ReadFull(*room, size, "a chunk"));
      if (!(Sha256Of(std::string_view(*room, size)) == d)) {
        return Refuse(StrCat(DigestName(d), ": bytes do not match"));
      }
      CAIRN_RETURN_IF_ERROR(stored(writer.Commit(d, size)));
      CAIRN_RETURN_IF_ERROR(Next());
    }
    CAIRN_RETURN_IF_ERROR(stored(writer.Close()));
    resp_.set_chunks_held(resp_.chunks_held() + writer.chunks_held());
    resp_.set_chunks_stored(resp_.chunks_stored() + writer.chunks_stored());
    resp_.set_bytes_stored(resp_.bytes_stored() + writer.bytes_stored());
    return absl::OkStatus();
  }

  absl::Status ReadEnd() {
    if (type_ != BundleRecord::kEnd) {
      return Refuse(
          "records are out of order (header, trust roots, releases, chunk lists, "
          "chunks, end)");
    }
    std::string b;
    CAIRN_RETURN_IF_ERROR(Payload(kMaxHeaderBytes, &b));
    cairn::v1::BundleEnd end;
    if (!end.ParseFromString(b)) return Refuse("does not parse");
    if (end.records() != records_ - 1 || end.chunks() != chunks_ ||
        end.chunk_bytes() != chunk_bytes_) {
      return Refuse(StrCat("it counts ", end.records(), " records, ", end.chunks(), " chunks and ",
                           end.chunk_bytes(), " chunk bytes; the bundle held ", records_ - 1, ", ",
                           chunks_, " and ", chunk_bytes_, " (records dropped or altered)"));
    }
    char extra;
    CAIRN_ASSIGN_OR_RETURN(size_t k, in_->Read(&extra, 1));
    if (k != 0) return Refuse("bytes follow the end record");
    return absl::OkStatus();
  }

  // Every release whole before any is committed.
  absl::Status CheckComplete() {
    ChunkStore* store = repo_->chunks();
    for (const auto& r : releases_) {
      uint64_t missing = 0, missing_bytes = 0;
      absl::flat_hash_set<std::string> seen;
      for (const auto& f : r.manifest.files()) {
        if (!seen.insert(f.root()).second) continue;
        auto bytes = repo_->GetObjectOrStaged(f.root());
        if (absl::IsNotFound(bytes.status())) {
          return absl::FailedPreconditionError(
              StrCat("the bundle lacks the chunk list of ", r.manifest.name(), "@",
                     r.manifest.version(), " ", f.path(),
                     ": it was exported for a node that holds it (--have/--base); import "
                     "that release first, or export again without it. Nothing was made visible"));
        }
        CAIRN_RETURN_IF_ERROR(bytes.status());
        CAIRN_ASSIGN_OR_RETURN(ChunkList cl, ParseChunkList(*bytes));
        for (const auto& c : cl.chunks()) {
          CAIRN_ASSIGN_OR_RETURN(Digest d, DigestFromBytes(c.digest()));
          CAIRN_ASSIGN_OR_RETURN(bool has, store->Has(d));
          if (!has) {
            ++missing;
            missing_bytes += c.length();
          }
        }
      }
      if (missing > 0) {
        return absl::FailedPreconditionError(
            StrCat("the bundle lacks ", missing, " chunks (", missing_bytes, " bytes) of ",
                   r.manifest.name(), "@", r.manifest.version(),
                   ": it was exported for a node holding releases this one lacks (--have/--base); "
                   "import those first, or export again without them. Nothing was made visible"));
      }
    }
    return absl::OkStatus();
  }

  absl::Status CommitAll() {
    for (auto& r : releases_) {
      auto* out = resp_.add_releases();
      out->set_name(r.manifest.name());
      out->set_version(r.manifest.version());
      out->set_manifest_digest(r.digest);
      for (const auto& n : r.notes) out->add_notes(n);
      if (r.tags.empty()) r.tags.emplace_back();  // the release alone
      bool first = true;
      for (size_t i = 0; i < r.tags.size(); ++i) {
        auto c = repo_->CommitReplicated(r.envelope, r.tags[i], first ? r.yank : "", "", 0);
        if (!c.ok()) {
          return Annotate(c.status(),
                          StrCat("committing ", r.manifest.name(), "@", r.manifest.version()));
        }
        if (first) out->set_already_present(c->already_present());
        first = false;
        if (r.tags[i].empty()) continue;
        if (c->tag_not_newer()) {
          out->add_notes(
              StrCat("tag ", r.tag_names[i], ": this node already holds it or a newer one"));
        } else if (!c->tag_conflict().empty()) {
          out->add_notes(StrCat("tag ", r.tag_names[i], " not applied: ", c->tag_conflict()));
        } else {
          out->add_tags(r.tag_names[i]);
        }
      }
    }
    return absl::OkStatus();
  }

  Repository* repo_;
  ByteSource* in_;
  const ImportOptions& o_;
  Clock* clock_;
  BundleRecord type_ = BundleRecord::kHeader;
  uint32_t len_ = 0;
  uint64_t records_ = 0, consumed_ = 0, next_progress_ = 0;
  uint64_t chunks_ = 0, chunk_bytes_ = 0;
  cairn::v1::BundleHeader header_;
  std::vector<Release> releases_;
  std::vector<std::string> roots_;
  cairn::v1::ImportResponse resp_;
};

// One import per repository at a time, whichever way it came (gRPC, a
// request file, in-process): two would hold twice the memory and race for
// the same chunks.
absl::Mutex importing_mu;
absl::flat_hash_set<Repository*>* importing ABSL_GUARDED_BY(importing_mu) =
    new absl::flat_hash_set<Repository*>();

}  // namespace

absl::StatusOr<cairn::v1::ImportResponse> ImportBundle(Repository* repo, ByteSource* in,
                                                       const ImportOptions& o) {
  {
    absl::MutexLock l(&importing_mu);
    if (!importing->insert(repo).second) {
      return absl::ResourceExhaustedError(
          "an import into this node is already running; run this one when it has finished "
          "(what it shares with the running one is then passed over)");
    }
  }
  Importer imp(repo, in, o);
  auto r = imp.Run();
  absl::MutexLock l(&importing_mu);
  importing->erase(repo);
  return r;
}

}  // namespace cairn
