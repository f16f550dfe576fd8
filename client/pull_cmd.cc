#include "pull_cmd.h"

#include <cmath>
#include <cstdio>
#include <optional>

#include "cairn/objects.h"
#include "cairn/status.h"
#include "cairn/strings.h"
#include "cli_util.h"
#include "interrupt.h"
#include "model_store.h"
#include "nlohmann/json.hpp"
#include "progress.h"
#include "trust_admin.h"

namespace cairn::client {

using json = nlohmann::json;

PullCommands::PullCommands(CLI::App* app, CliContext* ctx) : ctx_(ctx) {
  // pull
  pull_ = app->add_subcommand(
      "pull", "fetch and verify a release into the store (prints its path) or a directory");
  pull_->add_option("REF", pl_.ref, "NS/MODEL[:TAG|@VERSION|@sha256:...] (default tag: latest)")
      ->required();
  pull_->add_option("FILE", pl_.files, "only these files of the release (paths as listed by info)");
  pull_->add_option("--out", pl_.out, "write a plain tree here instead of into the store");
  pull_->add_option("--include", pl_.include,
                    "only files matching this glob ('*' crosses '/'); repeatable");
  pull_->add_option("--exclude", pl_.exclude, "skip files matching this glob; repeatable");
  pull_->add_flag("--offline", pl_.offline,
                  "use no node: restore from files already in the store, verified");
  pull_->add_flag("--paranoid", pl_.paranoid,
                  "re-hash every chunk taken from a local file, even one unchanged since cairn "
                  "wrote it, and re-read each file to check its whole SHA-256");
  pull_->add_option("--progress", progress_, "auto (a bar on a terminal), bar, lines, none")
      ->check(CLI::IsMember({"auto", "bar", "lines", "none"}));
  pull_->add_flag("--force", pl_.force,
                  "replace files in --out that no earlier pull wrote there (refused by default)");
  ctx_->AddStore(pull_);
  pull_->add_flag(
      "--fsync", do_fsync_,
      "fdatasync each file before renaming it into place (survives a power loss; slower)");
  pull_->add_flag("--no-fsync", no_fsync_compat_, "the default; kept for scripts")->group("");
  pull_->add_option("--window-mib", window_mib_,
                    "most MiB one stream may owe at a time; the window is ten times the measured bandwidth-delay product, up to this (default 16)");
  pull_
      ->add_option("--streams", pl_.streams_per_node,
                   "parallel connections to each node, 1-8 (default 2; more helps on lossy links)")
      ->check(CLI::Range(1, 8));
  pull_->add_option("--min-rate", pl_.min_rate,
                    "bytes/s a node must sustain while it owes chunks (default 32768)");
  pull_->add_flag("--no-trust-update", no_trust_update_,
                  "judge by the trust file as it is (default: first walk it forward to the newest "
                  "root the nodes hold)");
  pull_->add_option("--stall-seconds", pl_.stall_seconds,
                    "drop a node that sends nothing for this long (default 10)");
  ctx_->AddNode(pull_);
  ctx_->AddTrust(pull_);
  ctx_->AddJson(pull_);

  // verify
  verify_ = app->add_subcommand("verify", "re-check a pulled tree against its signed manifest");
  verify_->add_option("DIR", v_dir_, "pulled directory")->required();
  ctx_->AddTrust(verify_);
  ctx_->AddJson(verify_);
}

bool PullCommands::parsed() const { return pull_->parsed() || verify_->parsed(); }

namespace {
json SourcesJson(const std::vector<PullResult::Source>& sources) {
  json out = json::array();
  for (const auto& s : sources) {
    out.push_back(
        {{"address", s.address},
         {"bytes", s.bytes},
         {"chunks", s.chunks},
         {"dropped", s.demoted},
         {"rtt_ms", std::round(s.rtt_seconds * 1e4) / 10},
         {"rate", static_cast<uint64_t>(s.rate)}});
  }
  return out;
}
}  // namespace

int PullCommands::Run() {
  if (pull_->parsed()) {
    if (ctx_->settings.trust.empty()) return Fail(ctx_->LoadTrust().status());
    absl::StatusOr<std::vector<std::unique_ptr<Connection>>> conns =
        std::vector<std::unique_ptr<Connection>>{};
    if (!pl_.offline) conns = ctx_->ConnectAll();
    if (!conns.ok()) return Fail(conns.status());
    if (!no_trust_update_ && !pl_.offline) {
      // TUF's client workflow: first move the trust root forward along the
      // chain the mirrors hold (each version verified by the one before), so
      // a revocation takes effect before anything is judged by the old root.
      // Pull runs it beside the resolve and judges the answers by its result.
      pl_.update_trust = [this, nodes = Raw(*conns)]() -> absl::StatusOr<TrustRootView> {
        std::vector<std::string> refused;
        auto up = UpdateTrustFile(nodes, ctx_->settings.trust, &refused);
        for (const auto& r : refused) {
          std::fprintf(stderr, "cairn: warning: trust roots refused: %s\n", r.c_str());
        }
        // A newer root that could not be kept must not leave the answers to
        // be judged by the old one.
        if (!up.ok()) {
          return Annotate(up.status(), "updating the trust file " + ctx_->settings.trust +
                                           " (--no-trust-update judges by it as it is)");
        }
        if (up.ok() && up->to > up->from) {
          std::fprintf(stderr, "cairn: trust root updated v%lu -> v%lu (from %s)\n",
                       static_cast<unsigned long>(up->from), static_cast<unsigned long>(up->to),
                       up->source.c_str());
        }
        return ctx_->LoadTrust();
      };
    }
    // With the update, the root in the file only starts the walk (it may
    // have expired: the update is how a client catches up); the answers are
    // judged by the root the update returns, expiry checked.
    auto tr = pl_.update_trust ? LoadTrustFileForAdmin(ctx_->settings.trust) : ctx_->LoadTrust();
    if (!tr.ok()) return Fail(tr.status());
    pl_.fsync = do_fsync_;
    if (window_mib_ > 0) pl_.window_bytes = window_mib_ << 20;
    using PM = PullOptions::ProgressMode;
    pl_.progress = progress_ == "bar"     ? PM::kBar
                   : progress_ == "lines" ? PM::kLines
                   : progress_ == "none"  ? PM::kNone
                   : ctx_->tty()          ? PM::kBar
                                          : PM::kNone;
    pl_.state_dir = DefaultStateDir();
    pl_.rate_seconds = std::max(1, pl_.stall_seconds);
    pl_.log = [](const std::string& line) { std::fprintf(stderr, "cairn: %s\n", line.c_str()); };
    auto store = ModelStore::Open(ctx_->settings.store, -1, pl_.log);
    if (!store.ok()) return Fail(store.status());
    pl_.store = store->get();
    pl_.max_store_bytes = ctx_->settings.store_max_size;
    pl_.cancel = InterruptCancellation();
    auto r = Pull(Raw(*conns), *tr, pl_);
    pl_.update_trust = nullptr;  // it holds the connections, which go now
    if (absl::IsCancelled(r.status()) && pl_.cancel && pl_.cancel->cancelled()) {
      std::fprintf(stderr,
                   "cairn: interrupted; what was fetched is kept: run the same command again to "
                   "resume\n");
      return 130;
    }
    if (!r.ok()) return Fail(r.status());
    if (ctx_->as_json) {
      PrintJson({{"manifest", r->manifest},
                 {"name", r->name},
                 {"version", r->version},
                 {"path", r->path},
                 {"tag_path", r->tag_path},
                 {"partial", r->partial},
                 {"files", r->files},
                 {"bytes_total", r->bytes_total},
                 {"bytes_fetched", r->bytes_fetched},
                 {"bytes_local", r->bytes_local},
                 {"bytes_local_unread", r->bytes_local_unread},
                 {"chunks_total", r->chunks_total},
                 {"chunks_fetched", r->chunks_fetched},
                 {"chunks_local", r->chunks_local},
                 {"chunk_lists", {{"carried", r->lists_carried}, {"fetched", r->lists_fetched}}},
                 {"evicted", r->evicted},
                 {"nodes", SourcesJson(r->sources)},
                 {"peak_in_flight", r->peak_in_flight},
                 {"seconds", r->seconds},
                 {"transfer_seconds", r->transfer_seconds}});
    } else {
      // Into the store, stdout is the path alone (MODEL=$(cairn pull ...));
      // the summary goes to stderr.
      FILE* summary = pl_.out.empty() ? stderr : stdout;
      std::fprintf(summary,
                   "%s%s %s %s into %s\n  %lu files, %s; fetched %s (%lu chunks), %lu chunks "
                   "local (%.1fs)\n",
                   pl_.out.empty() ? "cairn: " : "", r->partial ? "pulled (partly)" : "pulled",
                   (r->name + " " + r->version).c_str(), r->manifest.c_str(), r->path.c_str(),
                   static_cast<unsigned long>(r->files), Progress::Bytes(r->bytes_total).c_str(),
                   Progress::Bytes(r->bytes_fetched).c_str(),
                   static_cast<unsigned long>(r->chunks_fetched),
                   static_cast<unsigned long>(r->chunks_local), r->seconds);
      if (r->sources.size() > 1 || (!r->sources.empty() && !r->sources[0].demoted.empty())) {
        for (const auto& src : r->sources) {
          std::fprintf(summary, "  %-22s %s in %lu chunks%s\n", src.address.c_str(),
                       Progress::Bytes(src.bytes).c_str(), static_cast<unsigned long>(src.chunks),
                       src.demoted.empty() ? "" : (" (dropped: " + src.demoted + ")").c_str());
        }
      }
      if (pl_.out.empty()) std::printf("%s\n", r->path.c_str());
    }
    return 0;
  }

  if (verify_->parsed()) {
    auto tr = ctx_->LoadTrust();
    if (!tr.ok()) return Fail(tr.status());
    auto r = VerifyTree(v_dir_, *tr);
    if (!r.ok()) return Fail(r.status());
    if (ctx_->as_json) {
      PrintJson({{"manifest", r->manifest},
                 {"name", r->name},
                 {"version", r->version},
                 {"files_ok", r->files_ok},
                 {"problems", r->problems},
                 {"extra", r->extra},
                 {"ok", r->problems.empty()}});
    } else {
      for (const auto& p : r->problems) std::printf("DIFFERS %s\n", p.c_str());
      for (const auto& p : r->extra) std::printf("extra   %s (not in the manifest)\n", p.c_str());
      if (r->problems.empty()) {
        std::printf("verified %s %s %s: %lu files OK%s\n", r->name.c_str(), r->version.c_str(),
                    r->manifest.c_str(), static_cast<unsigned long>(r->files_ok),
                    r->extra.empty()
                        ? ""
                        : StrCat("; ", r->extra.size(),
                                 " file(s) in the tree are not in the manifest (listed above)")
                              .c_str());
      }
    }
    if (!r->problems.empty()) {
      return Fail(absl::DataLossError(
          StrCat(r->problems.size(), " file(s) differ from the signed manifest")));
    }
    return 0;
  }
  return 0;
}

}  // namespace cairn::client
