#include "pull_cmd.h"

#include <cstdio>
#include <optional>

#include "cairn/objects.h"
#include "cairn/strings.h"
#include "cli_util.h"
#include "nlohmann/json.hpp"
#include "progress.h"
#include "trust_admin.h"

namespace cairn::client {

using json = nlohmann::json;

PullCommands::PullCommands(CLI::App* app, CliContext* ctx) : ctx_(ctx) {
  // pull
  pull_ = app->add_subcommand("pull", "fetch and verify a release into a directory");
  pull_->add_option("REF", pl_.ref, "NS/MODEL[:TAG|@sha256:...]")->required();
  pull_->add_option("--out", pl_.out, "directory to write")->required();
  pull_->add_flag("--force", pl_.force,
                  "replace files in --out that no earlier pull wrote there (refused by default)");
  ctx_->AddCache(pull_);
  pull_->add_flag(
      "--fsync", do_fsync_,
      "fdatasync each file before renaming it into place (survives a power loss; slower)");
  pull_->add_flag("--no-fsync", no_fsync_compat_, "the default; kept for scripts")->group("");
  pull_->add_option("--window-mib", window_mib_,
                    "most MiB one node may owe at a time (default 16)");
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
        {{"address", s.address}, {"bytes", s.bytes}, {"chunks", s.chunks}, {"dropped", s.demoted}});
  }
  return out;
}
}  // namespace

int PullCommands::Run() {
  if (pull_->parsed()) {
    if (ctx_->settings.trust.empty()) return Fail(ctx_->LoadTrust().status());
    auto conns = ctx_->ConnectAll();
    if (!conns.ok()) return Fail(conns.status());
    if (!no_trust_update_) {
      // TUF's client workflow: first move the trust root forward along the
      // chain the mirrors hold (each version verified by the one before), so
      // a revocation takes effect before anything is judged by the old root.
      std::vector<std::string> refused;
      auto up = UpdateTrustFile(Raw(*conns), ctx_->settings.trust, &refused);
      for (const auto& r : refused) {
        std::fprintf(stderr, "cairn: warning: trust roots refused: %s\n", r.c_str());
      }
      if (up.ok() && up->to > up->from) {
        std::fprintf(stderr, "cairn: trust root updated v%lu -> v%lu (from %s)\n",
                     static_cast<unsigned long>(up->from), static_cast<unsigned long>(up->to),
                     up->source.c_str());
      }
    }
    auto tr = ctx_->LoadTrust();
    if (!tr.ok()) return Fail(tr.status());
    pl_.cache_dir = ctx_->settings.cache;
    pl_.fsync = do_fsync_;
    if (window_mib_ > 0) pl_.window_bytes = window_mib_ << 20;
    pl_.progress = ctx_->tty();
    pl_.state_dir = DefaultStateDir();
    pl_.rate_seconds = std::max(1, pl_.stall_seconds);
    pl_.log = [](const std::string& line) { std::fprintf(stderr, "cairn: %s\n", line.c_str()); };
    auto r = Pull(Raw(*conns), *tr, pl_);
    if (!r.ok()) return Fail(r.status());
    if (ctx_->as_json) {
      PrintJson({{"manifest", r->manifest},
                 {"name", r->name},
                 {"version", r->version},
                 {"files", r->files},
                 {"bytes_total", r->bytes_total},
                 {"bytes_fetched", r->bytes_fetched},
                 {"chunks_total", r->chunks_total},
                 {"chunks_fetched", r->chunks_fetched},
                 {"chunks_from_cache", r->chunks_from_cache},
                 {"nodes", SourcesJson(r->sources)},
                 {"seconds", r->seconds},
                 {"transfer_seconds", r->transfer_seconds}});
    } else {
      std::printf(
          "pulled %s %s %s into %s\n  %lu files, %s; fetched %s (%lu chunks), %lu chunks from "
          "cache (%.1fs)\n",
          r->name.c_str(), r->version.c_str(), r->manifest.c_str(), pl_.out.c_str(),
          static_cast<unsigned long>(r->files), Progress::Bytes(r->bytes_total).c_str(),
          Progress::Bytes(r->bytes_fetched).c_str(), static_cast<unsigned long>(r->chunks_fetched),
          static_cast<unsigned long>(r->chunks_from_cache), r->seconds);
      if (r->sources.size() > 1 || !r->sources[0].demoted.empty()) {
        for (const auto& src : r->sources) {
          std::printf("  %-22s %s in %lu chunks%s\n", src.address.c_str(),
                      Progress::Bytes(src.bytes).c_str(), static_cast<unsigned long>(src.chunks),
                      src.demoted.empty() ? "" : (" (dropped: " + src.demoted + ")").c_str());
        }
      }
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
