#include "inspect_cmd.h"

#include <cstdio>
#include <optional>

#include "cairn/objects.h"
#include "cairn/strings.h"
#include "cli_util.h"
#include "nlohmann/json.hpp"
#include "progress.h"
#include "store_cmd.h"
#include "trust_admin.h"

namespace cairn::client {

using json = nlohmann::json;

namespace {

void PrintScrub(const cairn::v1::ScrubStatus& s) {
  std::string found;
  if (s.chunks_bad() > 0) found += StrCat(", ", s.chunks_bad(), " bad chunk(s) dropped");
  if (s.releases_damaged() > 0) {
    found += StrCat(", ", s.releases_damaged(), " release(s) lacking ", s.chunks_missing(),
                    " chunk(s) at the last pass (", s.repairs_started(), " repair(s) asked for)");
  }
  std::printf(
      "  scrub: %s%s, %lu chunks re-hashed since start%s; %s%s\n", s.running() ? "running, " : "",
      s.last_full_pass_unix() > 0 ? ("last full pass " + IsoDate(s.last_full_pass_unix())).c_str()
                                  : "no full pass yet",
      static_cast<unsigned long>(s.chunks_checked()), found.c_str(),
      s.bytes_per_second() > 0
          ? ("capped at " + Progress::Bytes(s.bytes_per_second()) + "/s").c_str()
          : "background scrub off",
      s.last_error().empty() ? "" : ("; last error: " + s.last_error()).c_str());
}

void PrintGc(const cairn::v1::GcStatus& g) {
  if (g.last_pass_unix() == 0) {
    std::printf("  gc: %sno pass since the node started (%s)%s\n", g.running() ? "running, " : "",
                g.interval_seconds() > 0
                    ? StrCat("every ", g.interval_seconds() / 3600, " h").c_str()
                    : "only when asked: cairn-node gc",
                g.last_error().empty() ? "" : ("; last error: " + g.last_error()).c_str());
    return;
  }
  std::printf(
      "  gc: %slast pass %s removed %lu chunk(s) (%s), compaction freed %s; %s live in %lu pack "
      "file(s), %s on disk%s\n",
      g.running() ? "running, " : "", IsoDate(g.last_pass_unix()).c_str(),
      static_cast<unsigned long>(g.chunks_removed()), Progress::Bytes(g.bytes_removed()).c_str(),
      Progress::Bytes(g.bytes_freed()).c_str(), Progress::Bytes(g.live_bytes()).c_str(),
      static_cast<unsigned long>(g.pack_files()), Progress::Bytes(g.disk_bytes()).c_str(),
      g.last_error().empty() ? "" : ("; last error: " + g.last_error()).c_str());
}

void PrintCapacity(const cairn::v1::CapacityStatus& c) {
  std::printf("  capacity: %s held%s, %s of it evictable (mirrored, not pinned)%s\n",
              Progress::Bytes(c.held_bytes()).c_str(),
              c.max_bytes() > 0 ? (" of max_bytes " + Progress::Bytes(c.max_bytes())).c_str()
                                : " (no node-wide cap)",
              Progress::Bytes(c.evictable_bytes()).c_str(),
              c.releases_evicted() > 0
                  ? StrCat("; evicted ", c.releases_evicted(), " release(s), ",
                           Progress::Bytes(c.bytes_evicted()), ", last ", c.last_evicted())
                        .c_str()
                  : "");
  if (!c.last_refused().empty()) {
    std::printf("  capacity: at %s: %s\n", IsoDate(c.last_refused_unix()).c_str(),
                OneLine(c.last_refused()).c_str());
  }
}

}  // namespace

InspectCommands::InspectCommands(CLI::App* app, CliContext* ctx) : ctx_(ctx) {
  // info, ls, lineage
  info_ = app->add_subcommand(
      "info",
      "show a release: published, pending co-signatures, or withheld (exit 1 if no node knows it)");
  info_->add_option("NAME", ref_arg_, "NS/MODEL[:TAG|@VERSION|@sha256:...]")->required();
  ctx_->AddNode(info_);
  ctx_->AddTrust(info_);
  ctx_->AddJson(info_);
  status_ =
      app->add_subcommand("status", "a node's identity, feed, and how its upstreams are followed");
  ctx_->AddNode(status_);
  ctx_->AddJson(status_);
  ls_ = app->add_subcommand(
      "ls", "list names, releases and tags on a node (or, with --local, in the store)");
  ls_->add_option("NAME", prefix_arg_,
                  "a name (exactly), a prefix ending in '/' (a namespace), or a glob");
  ls_->add_flag("--local", local_, "list the releases in the local store instead");
  ls_->add_flag("--pending", pending_, "also list releases waiting for co-signatures");
  ctx_->AddStore(ls_);
  ctx_->AddNode(ls_);
  ctx_->AddJson(ls_);
  lineage_ = app->add_subcommand("lineage", "parents (signed) and children (known to the node)");
  lineage_->add_option("NAME", ref_arg_, "NS/MODEL[:TAG|@VERSION|@sha256:...]")->required();
  ctx_->AddNode(lineage_);
  ctx_->AddTrust(lineage_);
  ctx_->AddJson(lineage_);
}

bool InspectCommands::parsed() const {
  return info_->parsed() || status_->parsed() || ls_->parsed() || lineage_->parsed();
}

int InspectCommands::Run() {
  if (ls_->parsed() && local_) return ListLocal(ctx_, prefix_arg_);
  auto conns = ctx_->ConnectAll();
  if (!conns.ok()) return Fail(conns.status());
  auto* conn = &(*conns)[0];  // ls, lineage, status: the first reachable node
  std::optional<TrustRootView> tr;
  if (!ctx_->settings.trust.empty() && (info_->parsed() || lineage_->parsed())) {
    auto t = ctx_->LoadTrust();
    if (!t.ok()) return Fail(t.status());
    tr = std::move(*t);
  }

  if (info_->parsed()) return RunInfo(ctx_, *conns, tr ? &*tr : nullptr, ref_arg_);
  if (ls_->parsed()) return RunLs(ctx_, **conn, ctx_->settings.nodes.size(), prefix_arg_, pending_);
  if (ctx_->settings.nodes.size() > 1 && !ctx_->as_json) {
    std::fprintf(stderr, "cairn: asking %s (the first reachable of %zu nodes)\n",
                 (*conn)->address().c_str(), ctx_->settings.nodes.size());
  }

  if (status_->parsed()) {
    auto got = NodeStatus(**conn);
    if (!got.ok()) return Fail(got.status());
    const cairn::v1::NodeInfoResponse& info = *got;
    json ups = json::array();
    for (const auto& u : info.upstreams()) {
      ups.push_back(
          {{"address", u.address()},
           {"cursor", u.cursor()},
           {"upstream_head", u.upstream_head()},
           {"events_behind", u.upstream_head() > u.cursor() ? u.upstream_head() - u.cursor() : 0},
           {"releases_replicated", u.releases_committed()},
           {"chunks_fetched", u.chunks_fetched()},
           {"bytes_fetched", u.bytes_fetched()},
           {"bytes_behind", u.bytes_behind()},
           {"bytes_per_second", u.bytes_per_second()},
           {"events_refused", u.events_refused()},
           {"last_error", u.last_error()},
           {"last_success_unix", u.last_success_unix()},
           {"events_outside_policy", u.events_outside_policy()},
           {"events_skipped_for_space", u.events_skipped_for_space()},
           {"events_skipped_yanked", u.events_skipped_yanked()},
           {"outside_window", u.outside_window()},
           {"tag_conflicts", u.tag_conflicts()},
           {"yank_conflicts", u.yank_conflicts()},
           {"last_conflict", u.last_conflict()},
           {"tags_rolled_back", u.tags_rolled_back()},
           {"last_rollback", u.last_rollback()},
           {"events_quarantined", u.events_quarantined()},
           {"last_quarantined", u.last_quarantined()},
           {"policy", u.policy()}});
    }
    if (ctx_->as_json) {
      PrintJson({{"node_id", info.node_id()},
                 {"region", info.region()},
                 {"free_bytes", info.free_bytes()},
                 {"namespaces",
                  std::vector<std::string>(info.namespaces().begin(), info.namespaces().end())},
                 {"releases", info.releases()},
                 {"feed_head", info.feed_head()},
                 {"trust_version", info.trust_version()},
                 {"releases_withheld", info.releases_withheld()},
                 {"tags_withheld", info.tags_withheld()},
                 {"tags_expiring", info.tags_expiring()},
                 {"expiring_tags", std::vector<std::string>(info.expiring_tags().begin(),
                                                            info.expiring_tags().end())},
                 {"upstreams", ups},
                 {"scrub",
                  {{"bytes_per_second", info.scrub().bytes_per_second()},
                   {"running", info.scrub().running()},
                   {"passes", info.scrub().passes()},
                   {"last_full_pass_unix", info.scrub().last_full_pass_unix()},
                   {"chunks_checked", info.scrub().chunks_checked()},
                   {"bytes_checked", info.scrub().bytes_checked()},
                   {"chunks_bad", info.scrub().chunks_bad()},
                   {"chunks_missing", info.scrub().chunks_missing()},
                   {"releases_damaged", info.scrub().releases_damaged()},
                   {"repairs_started", info.scrub().repairs_started()},
                   {"repairs_failed", info.scrub().repairs_failed()},
                   {"last_error", info.scrub().last_error()}}},
                 {"gc",
                  {{"interval_seconds", info.gc().interval_seconds()},
                   {"running", info.gc().running()},
                   {"passes", info.gc().passes()},
                   {"last_pass_unix", info.gc().last_pass_unix()},
                   {"last_seconds", info.gc().last_seconds()},
                   {"chunks", info.gc().chunks()},
                   {"chunks_removed", info.gc().chunks_removed()},
                   {"bytes_removed", info.gc().bytes_removed()},
                   {"chunks_in_grace", info.gc().chunks_in_grace()},
                   {"chunks_touched", info.gc().chunks_touched()},
                   {"staged_dropped", info.gc().staged_dropped()},
                   {"pending_dropped", info.gc().pending_dropped()},
                   {"packs_rewritten", info.gc().packs_rewritten()},
                   {"bytes_freed", info.gc().bytes_freed()},
                   {"pack_files", info.gc().pack_files()},
                   {"disk_bytes", info.gc().disk_bytes()},
                   {"live_bytes", info.gc().live_bytes()},
                   {"chunks_removed_total", info.gc().chunks_removed_total()},
                   {"bytes_removed_total", info.gc().bytes_removed_total()},
                   {"last_error", info.gc().last_error()}}},
                 {"capacity",
                  {{"max_bytes", info.capacity().max_bytes()},
                   {"held_bytes", info.capacity().held_bytes()},
                   {"evictable_bytes", info.capacity().evictable_bytes()},
                   {"releases_evicted", info.capacity().releases_evicted()},
                   {"bytes_evicted", info.capacity().bytes_evicted()},
                   {"last_evicted", info.capacity().last_evicted()},
                   {"last_refused", info.capacity().last_refused()},
                   {"last_refused_unix", info.capacity().last_refused_unix()}}}});
      return 0;
    }
    std::printf(
        "node %s%s at %s\n  trust root v%lu, %lu releases in %d namespace(s), feed head %lu, %s "
        "free\n",
        info.node_id().c_str(), info.region().empty() ? "" : (" (" + info.region() + ")").c_str(),
        (*conn)->address().c_str(), static_cast<unsigned long>(info.trust_version()),
        static_cast<unsigned long>(info.releases()), info.namespaces_size(),
        static_cast<unsigned long>(info.feed_head()), Progress::Bytes(info.free_bytes()).c_str());
    if (info.releases_withheld() + info.tags_withheld() > 0) {
      std::printf(
          "  withheld: %lu release(s), %lu tag(s) no longer verify under trust root v%lu "
          "(revoked or undelegated keys); kept on disk, not served\n",
          static_cast<unsigned long>(info.releases_withheld()),
          static_cast<unsigned long>(info.tags_withheld()),
          static_cast<unsigned long>(info.trust_version()));
    }
    if (info.tags_expiring() > 0) {
      std::string names;
      for (const auto& t : info.expiring_tags()) names += StrCat(names.empty() ? "" : ", ", t);
      if (info.tags_expiring() > static_cast<uint64_t>(info.expiring_tags_size())) names += ", ...";
      std::printf(
          "  warning: %lu tag(s) expire within 14 days or have expired (clients refuse an expired "
          "tag): %s; renew with cairn renew NS/MODEL:TAG --key KEY\n",
          static_cast<unsigned long>(info.tags_expiring()), names.c_str());
    }
    if (info.has_scrub()) PrintScrub(info.scrub());
    if (info.has_gc()) PrintGc(info.gc());
    if (info.has_capacity()) PrintCapacity(info.capacity());
    if (info.upstreams_size() == 0) std::printf("  follows no upstream\n");
    for (const auto& u : info.upstreams()) {
      uint64_t behind = u.upstream_head() > u.cursor() ? u.upstream_head() - u.cursor() : 0;
      std::string fetching = u.bytes_behind() > 0 ? StrCat(" (", Progress::Bytes(u.bytes_behind()),
                                                           " of the current release to go)")
                                                  : "";
      if (u.bytes_per_second() > 0) {
        fetching += StrCat(", ", Progress::Bytes(u.bytes_per_second()), "/s");
      }
      std::printf(
          "  upstream %s: %lu events behind (cursor %lu of %lu), %lu releases, %s fetched%s%s%s\n",
          u.address().c_str(), static_cast<unsigned long>(behind),
          static_cast<unsigned long>(u.cursor()), static_cast<unsigned long>(u.upstream_head()),
          static_cast<unsigned long>(u.releases_committed()),
          Progress::Bytes(u.bytes_fetched()).c_str(), fetching.c_str(),
          u.events_refused() ? StrCat(", ", u.events_refused(), " refused").c_str() : "",
          u.last_error().empty() ? "" : ("; last error: " + u.last_error()).c_str());
      std::printf("    policy: %s (%lu releases skipped by it)%s\n", u.policy().c_str(),
                  static_cast<unsigned long>(u.events_outside_policy()),
                  u.outside_window() ? "; waiting for its time window" : "");
      if (u.events_skipped_for_space() > 0 || u.events_skipped_yanked() > 0) {
        std::printf(
            "    passed over: %lu releases for space (fetched when asked for), %lu yanked\n",
            static_cast<unsigned long>(u.events_skipped_for_space()),
            static_cast<unsigned long>(u.events_skipped_yanked()));
      }
      if (u.tag_conflicts() > 0) {
        std::printf("    %lu tag conflict(s) (equal version, different release); latest: %s\n",
                    static_cast<unsigned long>(u.tag_conflicts()), u.last_conflict().c_str());
      }
      if (u.yank_conflicts() > 0) {
        std::printf(
            "    %lu yank record conflict(s) (equal version, different record); latest: %s\n",
            static_cast<unsigned long>(u.yank_conflicts()), u.last_conflict().c_str());
      }
      if (u.tags_rolled_back() > 0) {
        std::printf("    %lu older tag(s) refused (rollback attempts); latest: %s\n",
                    static_cast<unsigned long>(u.tags_rolled_back()), u.last_rollback().c_str());
      }
      if (u.events_quarantined() > 0) {
        std::printf("    %lu event(s) quarantined (the node died applying them); latest: %s\n",
                    static_cast<unsigned long>(u.events_quarantined()),
                    u.last_quarantined().c_str());
      }
    }
    return 0;
  }

  if (lineage_->parsed()) {
    std::string ref = ref_arg_;
    auto r = ResolveVerified(**conn, tr ? &*tr : nullptr, ref);
    if (!r.ok()) {
      if (auto yanked = YankedTagTarget(**conn, ref, r.status())) {
        ref = *yanked;  // described all the same
        r = ResolveVerified(**conn, tr ? &*tr : nullptr, ref);
      }
    }
    if (!r.ok()) return Fail(r.status());
    auto known = Children(**conn, ref);
    if (!known.ok()) return Fail(known.status());
    const cairn::v1::LineageResponse& resp = *known;
    json parents = json::array(), children = json::array();
    for (const auto& p : r->manifest.parents()) {
      parents.push_back({{"name", p.name()},
                         {"manifest", p.manifest_digest()},
                         {"relation", RelationName(p.relation())}});
    }
    for (const auto& c : resp.children()) {
      children.push_back({{"name", c.name()},
                          {"version", c.version()},
                          {"manifest", c.manifest_digest()},
                          {"relation", RelationName(c.relation())}});
    }
    if (ctx_->as_json) {
      PrintJson({{"manifest", r->digest},
                 {"name", r->manifest.name()},
                 {"version", r->manifest.version()},
                 {"parents", parents},
                 {"children", children}});
    } else {
      std::printf("%s %s %s\n", r->manifest.name().c_str(), r->manifest.version().c_str(),
                  r->digest.c_str());
      for (const auto& p : r->manifest.parents()) {
        std::printf("  parent  %s@%s (%s)\n", p.name().c_str(), p.manifest_digest().c_str(),
                    RelationName(p.relation()).c_str());
      }
      for (const auto& c : resp.children()) {
        std::printf("  child   %s %s@%s (%s)\n", c.name().c_str(), c.version().c_str(),
                    c.manifest_digest().c_str(), RelationName(c.relation()).c_str());
      }
    }
    return 0;
  }
  return 0;
}

}  // namespace cairn::client
