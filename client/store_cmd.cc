#include "store_cmd.h"

#include <fcntl.h>
#include <fnmatch.h>

#include <cstdio>
#include <filesystem>

#include "cairn/objects.h"
#include "cairn/status.h"
#include "cairn/strings.h"
#include "cli_util.h"
#include "client.h"
#include "model_store.h"
#include "nlohmann/json.hpp"
#include "progress.h"
#include "pull_internal.h"
#include "safe_fs.h"

namespace cairn::client {

using json = nlohmann::json;

bool NameMatches(const std::string& pattern, const std::string& name) {
  if (pattern.empty() || pattern == name) return true;
  if (pattern.back() == '/') return name.rfind(pattern, 0) == 0;
  if (pattern.find_first_of("*?[") != std::string::npos) {
    return ::fnmatch(pattern.c_str(), name.c_str(), 0) == 0;
  }
  return false;
}

namespace {

absl::StatusOr<std::unique_ptr<ModelStore>> OpenStore(CliContext* ctx) {
  return ModelStore::Open(ctx->settings.store, -1, [](const std::string& line) {
    std::fprintf(stderr, "cairn: %s\n", line.c_str());
  });
}

json ReleaseJson(const ModelStore& store, const ModelStore::Release& r) {
  return {{"name", r.name},          {"version", r.version}, {"manifest", r.digest},
          {"path", r.dir},           {"bytes", r.bytes},     {"last_used_unix", r.last_used},
          {"pulled_unix", r.pulled}, {"partial", r.partial}, {"tags", store.TagsOf(r.name, r.dir)}};
}

// The local releases `ref` names: NAME (all of them), NAME:TAG (what its
// link points at), NAME@VERSION or NAME@sha256:...
absl::StatusOr<std::vector<ModelStore::Release>> Matching(ModelStore& store,
                                                          const std::string& ref_text) {
  CAIRN_ASSIGN_OR_RETURN(Ref ref, ParseRef(ref_text));
  const bool all_of_name = ref_text.find_first_of(":@") == std::string::npos;
  CAIRN_ASSIGN_OR_RETURN(auto releases, store.Releases());
  std::vector<ModelStore::Release> out;
  for (const auto& r : releases) {
    if (r.name != ref.name) continue;
    bool match = all_of_name;
    if (!ref.digest.empty()) match = r.digest == ref.digest;
    if (!ref.version.empty()) match = r.version == ref.version;
    if (!all_of_name && !ref.tag.empty()) {
      auto tags = store.TagsOf(r.name, r.dir);
      match = std::find(tags.begin(), tags.end(), ref.tag) != tags.end();
    }
    if (match) out.push_back(r);
  }
  if (out.empty()) {
    return absl::NotFoundError("no release in the store " + store.dir() + " matches " + ref_text);
  }
  return out;
}

}  // namespace

int ListLocal(CliContext* ctx, const std::string& pattern) {
  auto store = OpenStore(ctx);
  if (!store.ok()) return Fail(store.status());
  auto all = (*store)->Releases();
  if (!all.ok()) return Fail(all.status());
  json out = json::array();
  for (const auto& r : *all) {
    if (!NameMatches(pattern, r.name)) continue;
    if (ctx->as_json) {
      out.push_back(ReleaseJson(**store, r));
      continue;
    }
    auto tags = (*store)->TagsOf(r.name, r.dir);
    std::printf("%-32s %-12s %s  %9s  %s%s%s\n    %s\n", r.name.c_str(), r.version.c_str(),
                r.digest.substr(0, 19).c_str(), Progress::Bytes(r.bytes).c_str(),
                IsoDate(r.last_used).c_str(),
                tags.empty() ? "" : ("  tags: " + StrJoin(tags, ",")).c_str(),
                r.partial ? "  (partial)" : "", r.dir.c_str());
  }
  if (ctx->as_json) PrintJson(out);
  return 0;
}

StoreCommands::StoreCommands(CLI::App* app, CliContext* ctx) : ctx_(ctx) {
  rm_ = app->add_subcommand("rm", "remove releases from the local store (not from any node)");
  rm_->add_option("REF", rm_refs_,
                  "NS/MODEL (every local release of it), NS/MODEL:TAG, NS/MODEL@VERSION or "
                  "NS/MODEL@sha256:...")
      ->required();
  ctx_->AddStore(rm_);
  ctx_->AddJson(rm_);
  cache_ = app->add_subcommand("cache", "the local store: disk use, pruning, verification");
  cache_->require_subcommand(1);
  du_ = cache_->add_subcommand("du", "disk used by each release in the store");
  prune_ = cache_->add_subcommand(
      "prune", "drop stale index entries and evict least recently used releases over a size");
  prune_->add_option("--max-size", max_size_,
                     "evict until the store fits (e.g. 200G; default: store_max_size in config)");
  verify_ = cache_->add_subcommand(
      "verify", "re-check every release in the store against its signed manifest");
  for (auto* c : {du_, prune_, verify_}) {
    ctx_->AddStore(c);
    ctx_->AddJson(c);
  }
  ctx_->AddTrust(verify_);
}

bool StoreCommands::parsed() const { return rm_->parsed() || cache_->parsed(); }

int StoreCommands::Run() {
  auto store = OpenStore(ctx_);
  if (!store.ok()) return Fail(store.status());
  ModelStore& s = **store;
  if (rm_->parsed()) {
    std::vector<ModelStore::Release> gone;
    for (const auto& ref : rm_refs_) {  // every ref is checked before anything goes
      auto m = Matching(s, ref);
      if (!m.ok()) return Fail(m.status());
      gone.insert(gone.end(), m->begin(), m->end());
    }
    json out = json::array();
    for (const auto& r : gone) {
      if (!s.GetRelease(r.digest).ok()) continue;  // named twice
      absl::Status st = s.Remove(r.digest);
      if (!st.ok()) return Fail(st);
      out.push_back(
          {{"name", r.name}, {"version", r.version}, {"manifest", r.digest}, {"bytes", r.bytes}});
      if (!ctx_->as_json) {
        std::printf("removed %s %s %s (%s)\n", r.name.c_str(), r.version.c_str(), r.digest.c_str(),
                    Progress::Bytes(r.bytes).c_str());
      }
    }
    if (ctx_->as_json) PrintJson(out);
    return 0;
  }
  if (du_->parsed()) {
    auto all = s.Releases();
    if (!all.ok()) return Fail(all.status());
    auto total = s.SizeOnDisk();
    if (!total.ok()) return Fail(total.status());
    uint64_t releases = 0;
    json list = json::array();
    for (auto r : *all) {
      r.bytes = DiskUsage(r.dir);
      releases += r.bytes;
      list.push_back(ReleaseJson(s, r));
      if (!ctx_->as_json) {
        std::printf("%10s  %s %s\n", Progress::Bytes(r.bytes).c_str(), r.name.c_str(),
                    r.version.c_str());
      }
    }
    uint64_t other = *total > releases ? *total - releases : 0;
    if (ctx_->as_json) {
      PrintJson({{"store", s.dir()},
                 {"bytes", *total},
                 {"releases_bytes", releases},
                 {"other_bytes", other},
                 {"max_bytes", ctx_->settings.store_max_size},
                 {"releases", list}});
    } else {
      std::printf("%10s  index and unfinished pulls\n%10s  total in %s%s\n",
                  Progress::Bytes(other).c_str(), Progress::Bytes(*total).c_str(), s.dir().c_str(),
                  ctx_->settings.store_max_size
                      ? (" (limit " + Progress::Bytes(ctx_->settings.store_max_size) + ")").c_str()
                      : "");
    }
    return 0;
  }
  if (prune_->parsed()) {
    uint64_t limit = ctx_->settings.store_max_size;
    if (!max_size_.empty()) {
      auto v = ParseSize(max_size_);
      if (!v.ok()) return Fail(v.status());
      limit = *v;
    }
    uint64_t dropped = 0, checked = 0;
    absl::Status st = s.Scrub(&dropped, &checked);
    if (!st.ok()) return Fail(st);
    // Files of pulls into the store that were killed and not run again: the
    // same command would have resumed from them; prune gives the space back.
    int partials = 0;
    {
      std::error_code ec;
      const std::string models = s.dir() + "/models";
      for (auto it = std::filesystem::recursive_directory_iterator(models, ec);
           !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
        if (!it->is_directory(ec) || it->is_symlink(ec)) continue;
        Fd dfd(::open(it->path().c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (dfd.fd >= 0) partials += RemoveStalePartials(dfd.fd);
      }
    }
    std::vector<ModelStore::Release> evicted;
    if (limit > 0 || !max_size_.empty()) {
      auto e = s.Evict(limit, "");
      if (!e.ok()) return Fail(e.status());
      evicted = std::move(*e);
    }
    auto total = s.SizeOnDisk();
    if (!total.ok()) return Fail(total.status());
    json ev = json::array();
    for (const auto& r : evicted) {
      ev.push_back({{"name", r.name}, {"version", r.version}, {"manifest", r.digest}});
      if (!ctx_->as_json)
        std::printf("evicted %s %s %s\n", r.name.c_str(), r.version.c_str(), r.digest.c_str());
    }
    if (ctx_->as_json) {
      PrintJson({{"evicted", ev},
                 {"stale_entries_dropped", dropped},
                 {"partial_files_removed", partials},
                 {"bytes", *total}});
    } else {
      std::printf(
          "dropped %lu stale index entries of %lu; removed %d file(s) of interrupted pulls; the "
          "store now takes %s\n",
          static_cast<unsigned long>(dropped), static_cast<unsigned long>(checked), partials,
          Progress::Bytes(*total).c_str());
    }
    return 0;
  }
  if (verify_->parsed()) {
    auto tr = ctx_->LoadTrust();
    if (!tr.ok()) return Fail(tr.status());
    auto all = s.Releases();
    if (!all.ok()) return Fail(all.status());
    uint64_t dropped = 0, checked = 0;
    absl::Status st = s.Scrub(&dropped, &checked);
    if (!st.ok()) return Fail(st);
    json list = json::array();
    size_t bad = 0, withheld = 0;
    for (const auto& r : *all) {
      auto v = VerifyTree(r.dir, *tr);
      std::vector<std::string> problems;
      if (absl::IsPermissionDenied(v.status())) {
        // Whole, perhaps, but its signer is no longer trusted: a pull would
        // not repair that, and nodes withhold it too.
        ++withheld;
        list.push_back({{"name", r.name},
                        {"version", r.version},
                        {"manifest", r.digest},
                        {"path", r.dir},
                        {"problems", {std::string(v.status().message())}},
                        {"ok", false},
                        {"withheld", true}});
        if (!ctx_->as_json) {
          std::printf("WITHHELD %s %s\n         %s; remove it with cairn rm %s@%s\n",
                      r.name.c_str(), r.version.c_str(), std::string(v.status().message()).c_str(),
                      r.name.c_str(), r.version.c_str());
        }
        continue;
      }
      if (!v.ok()) {
        problems.push_back(std::string(v.status().message()));
      } else if (v->manifest != r.digest) {
        problems.push_back("its signed manifest is " + v->manifest + ", not this release's");
      } else {
        problems = v->problems;
        // A file the release does not have, planted in a folder that tools
        // load whole (a .py next to the weights runs with trust_remote_code).
        for (const auto& x : v->extra) problems.push_back(x + ": not in the manifest");
      }
      bad += !problems.empty();
      // What is recorded of its files vouched for bytes they no longer hold
      // (a change no fingerprint sees): the repairing pull re-hashes them.
      if (!problems.empty()) {
        if (auto st = s.ForgetRelease(r.digest); !st.ok()) return Fail(st);
      }
      list.push_back({{"name", r.name},
                      {"version", r.version},
                      {"manifest", r.digest},
                      {"path", r.dir},
                      {"problems", problems},
                      {"ok", problems.empty()}});
      if (!ctx_->as_json) {
        std::printf("%s %s %s\n", problems.empty() ? "OK     " : "DAMAGED", r.name.c_str(),
                    r.version.c_str());
        for (const auto& p : problems) std::printf("        %s\n", p.c_str());
      }
    }
    if (ctx_->as_json) {
      PrintJson({{"releases", list}, {"stale_entries_dropped", dropped}, {"ok", bad == 0}});
    }
    if (bad > 0) {
      return Fail(absl::DataLossError(StrCat(bad,
                                             " release(s) in the store differ from their signed "
                                             "manifest; pull them again to repair")));
    }
    if (withheld > 0) {
      return Fail(absl::PermissionDeniedError(
          StrCat(withheld,
                 " release(s) in the store no longer verify under the trust root "
                 "(revoked or undelegated keys); remove them with cairn rm")));
    }
    return 0;
  }
  return 0;
}

}  // namespace cairn::client
