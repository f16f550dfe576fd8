#include "bundle_cmd.h"

#include <unistd.h>

#include <cstdio>

#include "cairn/bundle.h"
#include "cairn/crypto.h"
#include "cairn/limits.h"
#include "cairn/objects.h"
#include "cairn/status.h"
#include "cairn/strings.h"
#include "cairn/transport/grpc_status.h"
#include "cairn/transport/grpc_upstream.h"
#include "cli_util.h"
#include "interrupt.h"
#include "model_store.h"

namespace cairn::client {
namespace {

// The managed store as a bundle source: releases pulled into it (their
// signed envelopes, chunk lists and the files holding their chunks, each
// chunk re-hashed as it is read). Tags are those the store last verified.
class StoreSource final : public Upstream {
 public:
  explicit StoreSource(ModelStore* store) : store_(store) {}
  absl::StatusOr<std::string> NodeId() override { return std::string("local store"); }
  absl::StatusOr<cairn::v1::FeedResponse> Feed(uint64_t, uint32_t) override {
    return absl::UnimplementedError("the local store has no feed");
  }
  absl::StatusOr<cairn::v1::SummaryResponse> Summary() override {
    return absl::UnimplementedError("the local store has no summary");
  }
  absl::StatusOr<cairn::v1::ResolveResponse> Resolve(const std::string& text) override {
    CAIRN_ASSIGN_OR_RETURN(auto r, store_->Resolve(text));
    CAIRN_ASSIGN_OR_RETURN(auto release, store_->GetRelease(r.manifest_digest()));
    if (release.partial) {
      return absl::FailedPreconditionError(
          StrCat(text, " was pulled only in part (--include or FILE...): pull it whole first"));
    }
    return r;
  }
  absl::StatusOr<std::string> GetObject(const std::string& digest) override {
    return store_->GetObject(digest);
  }
  absl::Status GetChunks(const std::vector<ChunkWant>& wanted, const ChunkSink& sink) override {
    std::string data;
    for (const auto& w : wanted) {
      absl::Status st = store_->Read(w.digest, &data);
      if (absl::IsNotFound(st)) {
        return absl::NotFoundError(StrCat("chunk ", DigestName(w.digest),
                                          " is in no file of the store any more (a file changed "
                                          "or removed?): pull the release again"));
      }
      CAIRN_RETURN_IF_ERROR(st);
      CAIRN_RETURN_IF_ERROR(sink(w.digest, data));
    }
    return absl::OkStatus();
  }
  std::string address() const override { return "the local store"; }
  bool VerifiesChunks() const override { return true; }  // Read re-hashes

 private:
  ModelStore* store_;
};

}  // namespace

BundleCommands::BundleCommands(CLI::App* app, CliContext* ctx) : ctx_(ctx) {
  export_ = app->add_subcommand(
      "export",
      "write releases from a node to a bundle file to carry on a disk (cairn import reads it)");
  export_->add_option("REF", refs_, "NAME[:TAG], NAME@VERSION or NAME@sha256:...")->required();
  export_->add_option("--to", to_, "the bundle file")->required();
  export_->add_option("--split", split_,
                      "write volumes FILE.001, FILE.002 ... of at most this size (4G fits FAT32)");
  export_->add_option("--have", have_,
                      "the receiver's inventory (cairn-node inventory): what it holds is left out");
  export_->add_option("--base", base_,
                      "a release the receiver holds (NAME@sha256:...): its chunks are left out");
  export_->add_flag("--local", local_,
                    "from the local store (releases pulled whole) instead of a node");
  ctx_->AddNode(export_);
  ctx_->AddStore(export_);
  ctx_->AddJson(export_);
  import_ = app->add_subcommand(
      "import",
      "send a bundle to a node, which verifies it against its own trust root (the node allows "
      "it from [node] import_from: loopback by default)");
  import_->add_option("FILE", files_, "the bundle, or its volumes in order")->required();
  ctx_->AddNode(import_);
  ctx_->AddJson(import_);
}

int BundleCommands::Run() { return *export_ ? Export() : Import(); }

int BundleCommands::Export() {
  uint64_t split = VolumeWriter::kNoSplit;
  if (!split_.empty()) {
    auto s = ParseSize(split_);
    if (!s.ok()) return Fail(s.status());
    split = *s;
  }
  ExportOptions o;
  o.refs = refs_;
  o.have = base_;
  if (!have_.empty()) {
    auto text = ReadFileLimited(have_, 64 << 20);
    if (!text.ok()) return Fail(text.status());
    auto inv = ParseInventory(*text);
    if (!inv.ok()) return Fail(Annotate(inv.status(), have_));
    for (const auto& [name, digest] : inv->releases) o.have.push_back(name + "@" + digest);
    o.trust_after = inv->trust_version;
  }
  std::unique_ptr<Upstream> src;
  std::unique_ptr<ModelStore> store;
  if (local_) {
    auto st = ModelStore::Open(ctx_->settings.store, -1, [](const std::string& line) {
      std::fprintf(stderr, "cairn: %s\n", line.c_str());
    });
    if (!st.ok()) return Fail(st.status());
    store = std::move(*st);
    src = std::make_unique<StoreSource>(store.get());
    o.source = "store " + store->dir();
  } else {
    // The node is checked reachable (and its address valid) before a file is made.
    auto conn = ctx_->Connect();
    if (!conn.ok()) return Fail(conn.status());
    const std::string address = (*conn)->address();
    auto up = std::make_unique<GrpcUpstream>(
        address, ctx_->settings.timeout, std::vector<std::string>{}, /*streams=*/2, (*conn)->tls());
    up->SetLog([](const std::string& line) { std::fprintf(stderr, "cairn: %s\n", line.c_str()); });
    src = std::move(up);
    o.source = "node " + address;
  }
  o.cancel = InterruptCancellation();
  o.log = [](const std::string& line) { std::fprintf(stderr, "cairn: %s\n", line.c_str()); };
  if (ctx_->tty()) {
    o.progress = [](uint64_t done, uint64_t total) {
      std::fprintf(stderr, "\rexporting: %llu of %llu MB",
                   static_cast<unsigned long long>(done >> 20),
                   static_cast<unsigned long long>(total >> 20));
    };
  }
  auto w = VolumeWriter::Create(to_, split, NewBundleId());
  if (!w.ok()) return Fail(w.status());
  auto r = ExportBundle(*src, o, w->get());
  if (ctx_->tty()) std::fprintf(stderr, "\n");
  if (!r.ok()) return Fail(r.status());
  if (ctx_->as_json) {
    PrintJson({{"releases", r->releases},
               {"chunks", r->chunks},
               {"chunk_bytes", r->chunk_bytes},
               {"chunks_left_out", r->chunks_left_out},
               {"bytes_written", r->bytes_written},
               {"files", r->volumes},
               {"seconds", r->seconds}});
  } else {
    std::printf("%s\n", DescribeExport(*r).c_str());
  }
  return 0;
}

int BundleCommands::Import() {
  auto in = VolumeReader::Open(files_);
  if (!in.ok()) return Fail(in.status());
  auto conn = ctx_->Connect();
  if (!conn.ok()) return Fail(conn.status());
  // No deadline: a bundle of hundreds of GB takes what it takes; Ctrl-C
  // cancels, and the same command resumes.
  grpc::ClientContext cctx;
  Cancellation* cancel = InterruptCancellation();
  const int cb = cancel->AddCallback([&cctx] { cctx.TryCancel(); });
  cairn::v1::ImportResponse resp;
  auto stream = (*conn)->publish()->Import(&cctx, &resp);
  cairn::v1::ImportRequest req;
  const uint64_t total = (*in)->total_bytes();
  uint64_t sent = 0, next_report = 0;
  absl::Status read_error;
  for (;;) {
    std::string* buf = req.mutable_data();
    buf->resize(kBytesPerPart);
    auto k = (*in)->Read(buf->data(), buf->size());
    if (!k.ok()) {
      read_error = k.status();
      cctx.TryCancel();
      break;
    }
    if (*k == 0) break;
    buf->resize(*k);
    if (!stream->Write(req)) break;  // the node ended the call: Finish says why
    sent += *k;
    if (ctx_->tty() && sent >= next_report) {
      std::fprintf(stderr, "\rimporting: %llu of %llu MB",
                   static_cast<unsigned long long>(sent >> 20),
                   static_cast<unsigned long long>(total >> 20));
      next_report = sent + (64 << 20);
    }
  }
  stream->WritesDone();
  grpc::Status gs = stream->Finish();
  cancel->RemoveCallback(cb);
  if (ctx_->tty()) std::fprintf(stderr, "\n");
  if (!read_error.ok()) return Fail(read_error);
  if (cancel->cancelled()) {
    return Fail(absl::CancelledError("import interrupted: run the same command to resume"));
  }
  if (!gs.ok()) return Fail(FromGrpc(gs, "import into " + (*conn)->address()));
  if (ctx_->as_json) {
    nlohmann::json rels = nlohmann::json::array();
    for (const auto& r : resp.releases()) {
      rels.push_back({{"name", r.name()},
                      {"version", r.version()},
                      {"manifest", r.manifest_digest()},
                      {"tags", std::vector<std::string>(r.tags().begin(), r.tags().end())},
                      {"already_present", r.already_present()},
                      {"notes", std::vector<std::string>(r.notes().begin(), r.notes().end())}});
    }
    PrintJson({{"releases", rels},
               {"chunks_stored", resp.chunks_stored()},
               {"bytes_stored", resp.bytes_stored()},
               {"chunks_held", resp.chunks_held()},
               {"bytes_read", resp.bytes_read()}});
  } else {
    std::printf("%s\n", DescribeImport(resp).c_str());
  }
  return 0;
}

}  // namespace cairn::client
