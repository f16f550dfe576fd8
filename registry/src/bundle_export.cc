// Writing a bundle from any Upstream (a node over gRPC, the client's store).
#include <chrono>

#include "absl/container/flat_hash_set.h"
#include "cairn/bundle.h"
#include "cairn/objects.h"
#include "cairn/status.h"
#include "cairn/strings.h"

namespace cairn {
namespace {

using cairn::v1::ChunkList;
using cairn::v1::Manifest;

// Chunk wants fetched per GetChunks call: a long list still streams.
constexpr size_t kWantsPerBatch = 4096;
constexpr size_t kListsPerBatch = 16;

absl::StatusOr<Manifest> DecodeManifest(std::string_view envelope, std::string* digest) {
  CAIRN_ASSIGN_OR_RETURN(auto env, ParseEnvelope(envelope, kMaxEnvelopeBytes));
  if (env.payload_type() != kManifestPayloadType) {
    return absl::DataLossError("the source sent something else than a manifest");
  }
  CAIRN_ASSIGN_OR_RETURN(Manifest m, ParseManifest(env.payload()));
  *digest = DigestName(Sha256Of(env.payload()));
  return m;
}

struct Release {
  std::string digest, envelope;
  std::vector<std::string> tags;
  Manifest manifest;
  std::string yank;  // the release's yank record, if any
};

class Exporter {
 public:
  Exporter(Upstream& src, const ExportOptions& o, VolumeWriter* out)
      : src_(src), o_(o), out_(out) {}

  absl::StatusOr<ExportReport> Run() {
    const auto start = std::chrono::steady_clock::now();
    CAIRN_RETURN_IF_ERROR(ResolveAll());
    CAIRN_RETURN_IF_ERROR(LoadHave());
    // Every node holds version 1 at least: without an inventory, send every
    // root after it (0 asks a node for none).
    CAIRN_ASSIGN_OR_RETURN(std::vector<std::string> chain,
                           src_.TrustChain(std::max<uint64_t>(o_.trust_after, 1)));

    cairn::v1::BundleHeader h;
    h.set_format(kBundleFormat);
    h.set_bundle_id(out_->bundle_id());
    h.set_created_unix(std::chrono::duration_cast<std::chrono::seconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count());
    h.set_source(o_.source);
    h.set_releases(static_cast<uint32_t>(releases_.size()));
    CAIRN_RETURN_IF_ERROR(Emit(BundleRecord::kHeader, h.SerializeAsString()));
    for (const auto& root : chain) CAIRN_RETURN_IF_ERROR(Emit(BundleRecord::kTrustRoot, root));
    r_.trust_roots = chain.size();
    for (const auto& rel : releases_) {
      cairn::v1::BundleRelease br;
      br.set_manifest_envelope(rel.envelope);
      for (const auto& t : rel.tags) br.add_tag_envelopes(t);
      br.set_yank_envelope(rel.yank);
      CAIRN_RETURN_IF_ERROR(Emit(BundleRecord::kRelease, br.SerializeAsString()));
    }
    r_.releases = releases_.size();
    CAIRN_RETURN_IF_ERROR(WriteLists());
    CAIRN_RETURN_IF_ERROR(WriteChunks());
    cairn::v1::BundleEnd end;
    end.set_records(records_);
    end.set_chunks(r_.chunks);
    end.set_chunk_bytes(r_.chunk_bytes);
    CAIRN_RETURN_IF_ERROR(Emit(BundleRecord::kEnd, end.SerializeAsString()));
    CAIRN_RETURN_IF_ERROR(out_->Finish());
    r_.volumes = out_->paths();
    r_.bytes_written = out_->bytes_written();
    r_.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return r_;
  }

 private:
  absl::Status Emit(BundleRecord type, std::string_view payload) {
    scratch_.clear();
    AppendRecord(type, payload, &scratch_);
    ++records_;
    return out_->Write(scratch_);
  }

  absl::Status Cancelled() const {
    if (o_.cancel != nullptr && o_.cancel->cancelled()) {
      return absl::CancelledError("export interrupted");
    }
    return absl::OkStatus();
  }

  absl::Status ResolveAll() {
    if (o_.refs.empty()) return absl::InvalidArgumentError("name at least one release to export");
    for (const auto& ref : o_.refs) {
      CAIRN_RETURN_IF_ERROR(ParseRef(ref).status());
      auto r = src_.Resolve(ref);
      if (!r.ok())
        return Annotate(r.status(), StrCat("cannot resolve ", ref, " on ", src_.address()));
      std::string digest;
      CAIRN_ASSIGN_OR_RETURN(Manifest m, DecodeManifest(r->manifest_envelope(), &digest));
      auto it = std::find_if(releases_.begin(), releases_.end(),
                             [&](const Release& x) { return x.digest == digest; });
      if (it == releases_.end()) {
        if (releases_.size() >= kMaxBundleReleases) {
          return absl::InvalidArgumentError(
              StrCat("at most ", kMaxBundleReleases, " releases per bundle"));
        }
        releases_.push_back(
            Release{digest, r->manifest_envelope(), {}, std::move(m), r->yank_envelope()});
        it = releases_.end() - 1;
      }
      if (!r->tag_envelope().empty() &&
          std::find(it->tags.begin(), it->tags.end(), r->tag_envelope()) == it->tags.end()) {
        it->tags.push_back(r->tag_envelope());
      }
    }
    return absl::OkStatus();
  }

  // The chunk lists of `m` that are not `skip`, fetched and checked.
  absl::Status ForEachList(
      const Manifest& m, absl::flat_hash_set<std::string>* seen,
      const std::function<absl::Status(const std::string&, std::string&, const ChunkList&)>& fn) {
    std::vector<std::string> roots;
    std::vector<const cairn::v1::FileEntry*> files;
    for (const auto& f : m.files()) {
      if (!seen->insert(f.root()).second) continue;
      roots.push_back(f.root());
      files.push_back(&f);
    }
    for (size_t i = 0; i < roots.size(); i += kListsPerBatch) {
      CAIRN_RETURN_IF_ERROR(Cancelled());
      const size_t n = std::min(kListsPerBatch, roots.size() - i);
      std::vector<std::string> batch(roots.begin() + i, roots.begin() + i + n);
      auto got = src_.GetObjects(batch);
      for (size_t j = 0; j < n; ++j) {
        if (!got[j].ok()) {
          return Annotate(got[j].status(),
                          StrCat("chunk list of ", m.name(), " ", files[i + j]->path()));
        }
        CAIRN_ASSIGN_OR_RETURN(ChunkList cl, CheckChunkList(*got[j], batch[j], files[i + j]->size(),
                                                            files[i + j]->path()));
        CAIRN_RETURN_IF_ERROR(fn(batch[j], *got[j], cl));
      }
    }
    return absl::OkStatus();
  }

  absl::Status LoadHave() {
    for (const auto& ref : o_.have) {
      auto r = src_.Resolve(ref);
      if (absl::IsNotFound(r.status())) {
        if (o_.log) o_.log(StrCat(ref, " is not on ", src_.address(), ": its chunks are sent"));
        continue;
      }
      if (!r.ok()) return Annotate(r.status(), "cannot resolve " + ref);
      std::string digest;
      CAIRN_ASSIGN_OR_RETURN(Manifest m, DecodeManifest(r->manifest_envelope(), &digest));
      have_releases_.insert(digest);
      CAIRN_RETURN_IF_ERROR(
          ForEachList(m, &have_lists_, [&](const std::string&, std::string&, const ChunkList& cl) {
            for (const auto& c : cl.chunks()) {
              CAIRN_ASSIGN_OR_RETURN(Digest d, DigestFromBytes(c.digest()));
              have_chunks_.insert(d);
            }
            return absl::OkStatus();
          }));
    }
    return absl::OkStatus();
  }

  absl::Status WriteLists() {
    absl::flat_hash_set<std::string> seen = have_lists_;
    absl::flat_hash_set<Digest, DigestHash> queued;
    for (const auto& rel : releases_) {
      if (have_releases_.contains(rel.digest)) continue;
      CAIRN_RETURN_IF_ERROR(ForEachList(
          rel.manifest, &seen, [&](const std::string&, std::string& bytes, const ChunkList& cl) {
            CAIRN_RETURN_IF_ERROR(Emit(BundleRecord::kObject, bytes));
            ++r_.objects;
            for (const auto& c : cl.chunks()) {
              CAIRN_ASSIGN_OR_RETURN(Digest d, DigestFromBytes(c.digest()));
              if (have_chunks_.contains(d)) {
                if (queued.insert(d).second) {
                  ++r_.chunks_left_out;
                  r_.bytes_left_out += c.length();
                }
                continue;
              }
              if (!queued.insert(d).second) continue;
              wants_.push_back(ChunkWant{d, c.length()});
              to_write_ += c.length();
            }
            return absl::OkStatus();
          }));
    }
    return absl::OkStatus();
  }

  absl::Status WriteChunks() {
    const bool verified = src_.VerifiesChunks();
    std::string rec;
    for (size_t i = 0; i < wants_.size(); i += kWantsPerBatch) {
      CAIRN_RETURN_IF_ERROR(Cancelled());
      std::vector<ChunkWant> batch(wants_.begin() + i,
                                   wants_.begin() + std::min(wants_.size(), i + kWantsPerBatch));
      size_t next = 0;
      CAIRN_RETURN_IF_ERROR(src_.GetChunks(batch, [&](const Digest& d, std::string_view data) {
        if (next >= batch.size() || !(d == batch[next].digest)) {
          return absl::DataLossError("the source sent chunks out of order");
        }
        ++next;
        if (!verified && !(Sha256Of(data) == d)) {
          return absl::DataLossError(StrCat("chunk ", DigestName(d), " from ", src_.address(),
                                            " does not match its digest"));
        }
        rec.clear();
        char h[kRecordHeaderBytes];
        h[0] = static_cast<char>(BundleRecord::kChunk);
        const uint32_t len = static_cast<uint32_t>(d.size() + data.size());
        h[1] = static_cast<char>(len >> 24);
        h[2] = static_cast<char>(len >> 16);
        h[3] = static_cast<char>(len >> 8);
        h[4] = static_cast<char>(len);
        CAIRN_RETURN_IF_ERROR(out_->Write(std::string_view(h, sizeof(h))));
        CAIRN_RETURN_IF_ERROR(
            out_->Write(std::string_view(reinterpret_cast<const char*>(d.data()), d.size())));
        CAIRN_RETURN_IF_ERROR(out_->Write(data));
        ++records_;
        ++r_.chunks;
        r_.chunk_bytes += data.size();
        return absl::OkStatus();
      }));
      if (next != batch.size()) return absl::DataLossError("the source ended a batch early");
      if (o_.progress) o_.progress(r_.chunk_bytes, to_write_);
    }
    return absl::OkStatus();
  }

  Upstream& src_;
  const ExportOptions& o_;
  VolumeWriter* out_;
  std::vector<Release> releases_;
  absl::flat_hash_set<std::string> have_releases_, have_lists_;
  absl::flat_hash_set<Digest, DigestHash> have_chunks_;
  std::vector<ChunkWant> wants_;
  uint64_t to_write_ = 0;
  uint64_t records_ = 0;
  std::string scratch_;
  ExportReport r_;
};

class RepoSource final : public Upstream {
 public:
  explicit RepoSource(Repository* repo) : repo_(repo) {}
  absl::StatusOr<std::string> NodeId() override { return repo_->node_id(); }
  absl::StatusOr<cairn::v1::FeedResponse> Feed(uint64_t after, uint32_t max) override {
    return repo_->Feed(after, max);
  }
  absl::StatusOr<cairn::v1::SummaryResponse> Summary() override { return repo_->Summary(); }
  absl::StatusOr<cairn::v1::ResolveResponse> Resolve(const std::string& ref) override {
    return repo_->Resolve(ref);
  }
  absl::StatusOr<std::string> GetObject(const std::string& digest) override {
    return repo_->GetObject(digest);
  }
  absl::Status GetChunks(const std::vector<ChunkWant>& wanted, const ChunkSink& sink) override {
    std::string data;
    for (const auto& w : wanted) {
      absl::Status st = repo_->chunks_for_reads()->Get(w.digest, &data);
      if (!st.ok()) return Annotate(st, "chunk " + DigestName(w.digest));
      CAIRN_RETURN_IF_ERROR(sink(w.digest, data));
    }
    return absl::OkStatus();
  }
  std::string address() const override { return "this node"; }
  absl::StatusOr<std::vector<std::string>> TrustChain(uint64_t after) override {
    return repo_->TrustChainAfter(after);
  }

 private:
  Repository* repo_;
};

}  // namespace

std::unique_ptr<Upstream> RepositorySource(Repository* repo) {
  return std::make_unique<RepoSource>(repo);
}

absl::StatusOr<ExportReport> ExportBundle(Upstream& src, const ExportOptions& o,
                                          VolumeWriter* out) {
  Exporter e(src, o, out);
  auto r = e.Run();
  if (!r.ok()) out->Abort();
  return r;
}

}  // namespace cairn
