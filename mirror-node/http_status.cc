// What an operator sees over HTTP: /metrics (Prometheus text format) and the
// status page at / (server-rendered HTML, no external assets).
#include <sys/statvfs.h>

#include <filesystem>

#include "absl/strings/str_format.h"
#include "cairn/strings.h"
#include "gc_loop.h"
#include "http_gateway_impl.h"
#include "http_util.h"
#include "scrub.h"
#include "spdlog/spdlog.h"

namespace cairn::node {

using namespace gw;  // NOLINT: the gateway's own insides

namespace {

// A Prometheus label value: backslash, quote and newline escaped.
std::string Label(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

std::string Html(std::string_view v) {
  std::string out;
  for (char c : v) {
    switch (c) {
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '&':
        out += "&amp;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string Bytes(uint64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024 && u < 5) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

struct Disk {
  uint64_t free = 0, total = 0;
  bool known = false;
};
Disk DiskOf(const std::string& dir) {
  Disk d;
  struct statvfs v {};
  if (!dir.empty() && ::statvfs(dir.c_str(), &v) == 0) {
    d.free = static_cast<uint64_t>(v.f_bavail) * v.f_frsize;
    d.total = static_cast<uint64_t>(v.f_blocks) * v.f_frsize;
    d.known = true;
  }
  return d;
}

}  // namespace

void HttpGateway::Impl::NoteError(std::string what) {
  absl::MutexLock l(&status_mu);
  recent_errors.emplace_back(repo->clock()->NowUnix(), std::move(what));
  while (recent_errors.size() > kRecentErrors) recent_errors.pop_front();
}

void HttpGateway::Impl::NoteDamage(const std::string& path, const absl::Status& st) {
  counters.verification_failures++;
  spdlog::error("HTTP: {}: {}", path, st.ToString());
  NoteError(StrCat(path, ": ", st.message()));
}

uint64_t HttpGateway::Impl::StoreBytes() {
  const auto now = std::chrono::steady_clock::now();
  {
    absl::MutexLock l(&status_mu);
    if (store_walked != std::chrono::steady_clock::time_point() &&
        now - store_walked < std::chrono::seconds(30)) {
      return store_bytes;
    }
  }
  uint64_t total = 0;
  std::error_code ec;
  if (!opts.data_dir.empty()) {
    for (auto it = std::filesystem::recursive_directory_iterator(
             opts.data_dir, std::filesystem::directory_options::skip_permission_denied, ec);
         !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
      if (it->is_regular_file(ec)) total += it->file_size(ec);
    }
  }
  absl::MutexLock l(&status_mu);
  store_bytes = total;
  store_walked = now;
  return total;
}

Answer HttpGateway::Impl::Metrics() {
  std::string out;
  auto metric = [&](std::string_view name, std::string_view type, std::string_view help) {
    out += StrCat("# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
  };
  metric("cairn_http_requests_total", "counter", "HTTP requests answered, by endpoint and status.");
  {
    absl::MutexLock l(&request_counts.mu);
    for (const auto& [k, n] : request_counts.by_endpoint) {
      out += StrCat("cairn_http_requests_total{endpoint=\"", Label(k.first), "\",code=\"", k.second,
                    "\"} ", n, "\n");
    }
  }
  metric("cairn_http_bytes_sent_total", "counter",
         "File and chunk bytes sent, by where they came from.");
  out += StrCat("cairn_http_bytes_sent_total{source=\"store\"} ",
                counters.bytes_sent.load() - counters.bytes_sent_on_demand.load(), "\n");
  out += StrCat("cairn_http_bytes_sent_total{source=\"on_demand\"} ",
                counters.bytes_sent_on_demand.load(), "\n");
  metric("cairn_http_bytes_sent_zero_copy_total", "counter",
         "Of the bytes sent, those sent from the pack files with sendfile (plain HTTP).");
  out +=
      StrCat("cairn_http_bytes_sent_zero_copy_total ", counters.bytes_sent_zero_copy.load(), "\n");
  metric("cairn_chunk_reads_total", "counter",
         "Chunks a response needed: held already (hit) or waited for from the federation (miss).");
  out += StrCat("cairn_chunk_reads_total{result=\"hit\"} ", counters.chunk_hits.load(), "\n");
  out += StrCat("cairn_chunk_reads_total{result=\"miss\"} ", counters.chunk_misses.load(), "\n");
  metric("cairn_verification_failures_total", "counter",
         "Chunks that did not match their digest when read to be served.");
  out += StrCat("cairn_verification_failures_total ", counters.verification_failures.load(), "\n");
  metric("cairn_http_chunk_checks_total", "counter",
         "Chunks the gateway checked before sending them: with the CRC-32C recorded when their "
         "SHA-256 was verified on arrival, or by re-hashing them.");
  out += StrCat("cairn_http_chunk_checks_total{how=\"crc32c\"} ",
                counters.chunks_checked_crc.load(), "\n");
  out += StrCat("cairn_http_chunk_checks_total{how=\"sha256\"} ",
                counters.chunks_checked_sha256.load(), "\n");
  metric("cairn_http_connections_open", "gauge", "HTTP connections open.");
  out += StrCat("cairn_http_connections_open ", connections.load(), "\n");
  metric("cairn_http_connections_refused_total", "counter",
         "Connections over a limit, answered 503.");
  out += StrCat("cairn_http_connections_refused_total ", counters.connections_refused.load(), "\n");
  if (opts.on_demand != nullptr) {
    metric("cairn_on_demand_fetches_in_flight", "gauge", "Releases being fetched for a request.");
    out += StrCat("cairn_on_demand_fetches_in_flight ", opts.on_demand->in_flight(), "\n");
    metric("cairn_on_demand_fetches_total", "counter",
           "Releases fetched for a request, by outcome.");
    out += StrCat("cairn_on_demand_fetches_total{result=\"ok\"} ", opts.on_demand->fetched(), "\n");
    out +=
        StrCat("cairn_on_demand_fetches_total{result=\"failed\"} ", opts.on_demand->failed(), "\n");
  }

  std::vector<cairn::v1::UpstreamStatus> ups;
  {
    absl::MutexLock l(&status_mu);
    if (upstream_status) ups = upstream_status();
  }
  metric("cairn_replication_lag_events", "gauge", "Feed events of the upstream not yet applied.");
  for (const auto& u : ups) {
    out += StrCat("cairn_replication_lag_events{upstream=\"", Label(u.address()), "\"} ",
                  u.upstream_head() > u.cursor() ? u.upstream_head() - u.cursor() : 0, "\n");
  }
  metric("cairn_replication_lag_bytes", "gauge",
         "Chunk bytes the release being fetched still needs.");
  for (const auto& u : ups) {
    out += StrCat("cairn_replication_lag_bytes{upstream=\"", Label(u.address()), "\"} ",
                  u.bytes_behind(), "\n");
  }
  metric("cairn_replication_bytes_fetched_total", "counter",
         "Chunk bytes fetched from the upstream.");
  for (const auto& u : ups) {
    out += StrCat("cairn_replication_bytes_fetched_total{upstream=\"", Label(u.address()), "\"} ",
                  u.bytes_fetched(), "\n");
  }
  metric("cairn_replication_bytes_per_second", "gauge", "Fetch rate over the last 10 s.");
  for (const auto& u : ups) {
    out += StrCat("cairn_replication_bytes_per_second{upstream=\"", Label(u.address()), "\"} ",
                  u.bytes_per_second(), "\n");
  }
  if (opts.scrub != nullptr) {
    const cairn::v1::ScrubStatus s = opts.scrub->Status();
    metric("cairn_scrub_rate_limit_bytes_per_second", "gauge",
           "The background scrub's cap (0: no background scrub).");
    out += StrCat("cairn_scrub_rate_limit_bytes_per_second ", s.bytes_per_second(), "\n");
    metric("cairn_scrub_running", "gauge", "1 while a scrub pass runs.");
    out += StrCat("cairn_scrub_running ", s.running() ? 1 : 0, "\n");
    metric("cairn_scrub_passes_total", "counter", "Full scrub passes ended.");
    out += StrCat("cairn_scrub_passes_total ", s.passes(), "\n");
    metric("cairn_scrub_last_full_pass_unix", "gauge", "When the last full pass ended (0: never).");
    out += StrCat("cairn_scrub_last_full_pass_unix ", s.last_full_pass_unix(), "\n");
    metric("cairn_scrub_chunks_checked_total", "counter", "Stored chunks re-hashed by the scrub.");
    out += StrCat("cairn_scrub_chunks_checked_total ", s.chunks_checked(), "\n");
    metric("cairn_scrub_bytes_checked_total", "counter", "Chunk bytes re-hashed by the scrub.");
    out += StrCat("cairn_scrub_bytes_checked_total ", s.bytes_checked(), "\n");
    metric("cairn_scrub_chunks_bad_total", "counter",
           "Stored chunks that failed their hash (dropped, never served again).");
    out += StrCat("cairn_scrub_chunks_bad_total ", s.chunks_bad(), "\n");
    metric("cairn_scrub_chunks_missing", "gauge",
           "Chunks a visible release needs that the node lacks (last pass).");
    out += StrCat("cairn_scrub_chunks_missing ", s.chunks_missing(), "\n");
    metric("cairn_scrub_releases_damaged", "gauge", "Releases lacking chunks (last pass).");
    out += StrCat("cairn_scrub_releases_damaged ", s.releases_damaged(), "\n");
    metric("cairn_scrub_repairs_total", "counter",
           "Damaged releases whose chunks were asked for from upstream.");
    out += StrCat("cairn_scrub_repairs_total ", s.repairs_started(), "\n");
    metric("cairn_scrub_repairs_failed_total", "counter",
           "Repairs no upstream could start (the release is looked at again later).");
    out += StrCat("cairn_scrub_repairs_failed_total ", s.repairs_failed(), "\n");
  }
  if (opts.gc != nullptr) {
    const cairn::v1::GcStatus g = opts.gc->Status();
    const struct {
      const char* name;
      const char* type;
      const char* help;
      std::string value;
    } gauges[] = {
        {"cairn_gc_running", "gauge", "1 while a garbage collection pass runs.",
         g.running() ? "1" : "0"},
        {"cairn_gc_passes_total", "counter", "Garbage collection passes ended.",
         StrCat(g.passes())},
        {"cairn_gc_last_pass_unix", "gauge", "When the last pass ended (0: none since start).",
         StrCat(g.last_pass_unix())},
        {"cairn_gc_last_pass_seconds", "gauge", "How long the last pass took.",
         absl::StrFormat("%g", g.last_seconds())},
        {"cairn_gc_chunks_removed_total", "counter", "Unreferenced chunks removed.",
         StrCat(g.chunks_removed_total())},
        {"cairn_gc_bytes_removed_total", "counter", "Bytes of the chunks removed.",
         StrCat(g.bytes_removed_total())},
        {"cairn_gc_chunks_in_grace", "gauge",
         "Unreferenced chunks kept at the last pass: newer than the grace period.",
         StrCat(g.chunks_in_grace())},
        {"cairn_gc_bytes_freed_last_pass", "gauge",
         "Disk space compaction gave back at the last pass.", StrCat(g.bytes_freed())},
        {"cairn_store_pack_files", "gauge", "Pack files after the last pass.",
         StrCat(g.pack_files())},
        {"cairn_store_pack_disk_bytes", "gauge",
         "Disk space the pack files held after the last pass.", StrCat(g.disk_bytes())},
        {"cairn_store_live_bytes", "gauge",
         "Chunk bytes the index names (live or awaiting collection) after the last pass.",
         StrCat(g.live_bytes())},
    };
    for (const auto& m : gauges) {
      metric(m.name, m.type, m.help);
      out += StrCat(m.name, " ", m.value, "\n");
    }
  }
  {
    const cairn::v1::CapacityStatus c = repo->CapacityStatus();
    const struct {
      const char* name;
      const char* type;
      const char* help;
      uint64_t value;
    } capacity[] = {
        {"cairn_capacity_max_bytes", "gauge", "[node] max_bytes (0: no node-wide cap).",
         c.max_bytes()},
        {"cairn_capacity_held_bytes", "gauge", "Bytes of the releases the node holds.",
         c.held_bytes()},
        {"cairn_capacity_evictable_bytes", "gauge",
         "Of them, mirrored and not pinned: what eviction may free.", c.evictable_bytes()},
        {"cairn_capacity_releases_evicted_total", "counter",
         "Releases evicted to make room, since the node started.", c.releases_evicted()},
        {"cairn_capacity_bytes_evicted_total", "counter", "Bytes of the releases evicted.",
         c.bytes_evicted()},
        {"cairn_capacity_last_refused_unix", "gauge",
         "When a release last found no room (0: never since start).",
         static_cast<uint64_t>(std::max<int64_t>(0, c.last_refused_unix()))},
    };
    for (const auto& m : capacity) {
      metric(m.name, m.type, m.help);
      out += StrCat(m.name, " ", m.value, "\n");
    }
  }
  const Disk disk = DiskOf(opts.data_dir);
  if (disk.known) {
    metric("cairn_store_bytes", "gauge", "Bytes in the node's data directory.");
    out += StrCat("cairn_store_bytes ", StoreBytes(), "\n");
    metric("cairn_disk_free_bytes", "gauge", "Free bytes on the data directory's file system.");
    out += StrCat("cairn_disk_free_bytes ", disk.free, "\n");
  }
  if (auto list = repo->List(""); list.ok()) {
    uint64_t releases = 0, bytes = 0;
    for (const auto& e : list->entries()) {
      for (const auto& r : e.releases()) {
        ++releases;
        bytes += r.bytes();
      }
    }
    metric("cairn_releases_held", "gauge", "Releases this node serves.");
    out += StrCat("cairn_releases_held ", releases, "\n");
    metric("cairn_release_bytes", "gauge", "Sum of the sizes of the releases served.");
    out += StrCat("cairn_release_bytes ", bytes, "\n");
  }
  const TrustRootView trust = repo->trust();
  const auto& root = trust.root();
  metric("cairn_trust_root_version", "gauge", "Version of the trust root in force.");
  out += StrCat("cairn_trust_root_version ", root.version(), "\n");
  metric("cairn_trust_root_expires_unix", "gauge", "When the trust root in force expires.");
  out += StrCat("cairn_trust_root_expires_unix ", root.expires_unix(), "\n");
  return Answer{http::status::ok, std::move(out), "text/plain; version=0.0.4; charset=utf-8", {}};
}

Answer HttpGateway::Impl::StatusPage() {
  const int64_t now = repo->clock()->NowUnix();
  const TrustRootView trust = repo->trust();
  const auto& root = trust.root();
  std::string h = StrCat(
      "<!doctype html><html lang=en><head><meta charset=utf-8>"
      "<meta name=viewport content=\"width=device-width,initial-scale=1\">"
      "<title>Cairn node ",
      Html(repo->node_id()),
      "</title><style>"
      "body{font:15px/1.4 system-ui,sans-serif;margin:1em;max-width:60em;color:#222}"
      "table{border-collapse:collapse;width:100%;margin-bottom:1em}"
      "td,th{border-bottom:1px solid #ddd;padding:.3em;text-align:left;vertical-align:top}"
      "th{background:#f4f4f4}.bad{color:#a00}.num{text-align:right}"
      "div.scroll{overflow-x:auto}</style></head><body>"
      "<h1>Cairn mirror node</h1><table>"
      "<tr><th>Node</th><td>",
      Html(repo->node_id()), "</td></tr>", "<tr><th>Trust root</th><td>version ", root.version(),
      ", expires ", Html(http_util::IsoTime(root.expires_unix()).substr(0, 10)),
      root.expires_unix() < now ? " <b class=bad>EXPIRED</b>" : "", "</td></tr>");
  const Disk disk = DiskOf(opts.data_dir);
  if (disk.known) {
    h += StrCat("<tr><th>Disk</th><td>", Bytes(StoreBytes()), " in the store, ", Bytes(disk.free),
                " free of ", Bytes(disk.total), "</td></tr>");
  }
  if (opts.scrub != nullptr) {
    const cairn::v1::ScrubStatus s = opts.scrub->Status();
    h += StrCat(
        "<tr><th>Scrub</th><td>", s.running() ? "running; " : "",
        s.last_full_pass_unix() > 0
            ? StrCat("last full pass ",
                     Html(http_util::IsoTime(s.last_full_pass_unix()).substr(0, 19) + "Z"))
            : std::string("no full pass yet"),
        ", ", s.chunks_checked(), " chunks re-hashed since start",
        s.chunks_bad() > 0 ? StrCat(", <b class=bad>", s.chunks_bad(), " bad</b>") : "",
        s.releases_damaged() > 0 ? StrCat(", <b class=bad>", s.releases_damaged(),
                                          " releases lacking ", s.chunks_missing(), " chunks</b>")
                                 : "",
        s.bytes_per_second() > 0 ? StrCat("; capped at ", Bytes(s.bytes_per_second()), "/s")
                                 : std::string("; background scrub off"),
        s.last_error().empty() ? "" : StrCat(" <b class=bad>", Html(s.last_error()), "</b>"),
        "</td></tr>");
  }
  if (opts.gc != nullptr) {
    const cairn::v1::GcStatus g = opts.gc->Status();
    h += StrCat(
        "<tr><th>Garbage collection</th><td>", g.running() ? "running; " : "",
        g.last_pass_unix() > 0
            ? StrCat("last pass ", Html(http_util::IsoTime(g.last_pass_unix()).substr(0, 19) + "Z"),
                     ": ", g.chunks_removed(), " chunks (", Bytes(g.bytes_removed()), ") removed, ",
                     Bytes(g.bytes_freed()), " freed by compaction; ", Bytes(g.live_bytes()),
                     " live in ", g.pack_files(), " pack files")
            : std::string("no pass since start"),
        g.interval_seconds() > 0 ? StrCat("; every ", g.interval_seconds() / 3600, " h")
                                 : std::string("; only when asked"),
        g.last_error().empty() ? "" : StrCat(" <b class=bad>", Html(g.last_error()), "</b>"),
        "</td></tr>");
  }
  {
    const cairn::v1::CapacityStatus c = repo->CapacityStatus();
    h += StrCat("<tr><th>Capacity</th><td>", Bytes(c.held_bytes()), " of releases held",
                c.max_bytes() > 0 ? StrCat(" of max_bytes ", Bytes(c.max_bytes()))
                                  : std::string(" (no max_bytes)"),
                ", ", Bytes(c.evictable_bytes()), " evictable; ", c.releases_evicted(),
                " releases evicted since start",
                c.last_evicted().empty() ? "" : StrCat(" (last: ", Html(c.last_evicted()), ")"),
                c.last_refused().empty()
                    ? ""
                    : StrCat(" <b class=bad>no room: ", Html(c.last_refused()), "</b>"),
                "</td></tr>");
  }
  h += StrCat("<tr><th>Served</th><td>", counters.requests.load(), " HTTP requests, ",
              Bytes(counters.bytes_sent.load()), " sent, ", connections.load(),
              " connections open</td></tr></table>");

  h += "<h2>Releases</h2><div class=scroll><table><tr><th>Model</th><th>Version</th>"
       "<th class=num>Size</th><th>Tags</th></tr>";
  size_t shown = 0;
  if (auto list = repo->List(""); list.ok()) {
    for (const auto& e : list->entries()) {
      for (const auto& r : e.releases()) {
        if (++shown > 500) break;
        std::string tags;
        for (const auto& t : e.tags()) {
          if (t.manifest_digest() == r.manifest_digest())
            tags += (tags.empty() ? "" : ", ") + t.tag();
        }
        if (r.yanked()) tags += StrCat(tags.empty() ? "" : "; ", "YANKED: ", r.yank_reason());
        h += StrCat("<tr><td>", Html(e.name()), "</td><td>", Html(r.version()),
                    "</td><td class=num>", Bytes(r.bytes()), "</td><td",
                    r.yanked() ? " class=bad" : "", ">", Html(tags), "</td></tr>");
      }
    }
  }
  if (shown == 0) h += "<tr><td colspan=4>none yet</td></tr>";
  if (shown > 500) h += "<tr><td colspan=4>first 500 shown</td></tr>";
  h += "</table></div>";

  std::vector<cairn::v1::UpstreamStatus> ups;
  std::deque<std::pair<int64_t, std::string>> errors;
  {
    absl::MutexLock l(&status_mu);
    if (upstream_status) ups = upstream_status();
    errors = recent_errors;
  }
  h += "<h2>Upstreams</h2><div class=scroll><table><tr><th>Address</th><th class=num>Lag "
       "(events)</th><th class=num>Behind</th><th class=num>Rate</th><th>Last error</th></tr>";
  for (const auto& u : ups) {
    h += StrCat("<tr><td>", Html(u.address()), "</td><td class=num>",
                u.upstream_head() > u.cursor() ? u.upstream_head() - u.cursor() : 0,
                "</td><td class=num>", Bytes(u.bytes_behind()), "</td><td class=num>",
                Bytes(u.bytes_per_second()), "/s</td><td class=bad>", Html(u.last_error()),
                "</td></tr>");
  }
  if (ups.empty()) h += "<tr><td colspan=5>none (this node follows no upstream)</td></tr>";
  h += "</table></div><h2>Recent errors</h2>";
  if (errors.empty()) {
    h += "<p>none</p>";
  } else {
    h += "<ul>";
    for (auto it = errors.rbegin(); it != errors.rend(); ++it) {
      h += StrCat("<li>", Html(http_util::IsoTime(it->first).substr(0, 19) + "Z"), " ",
                  Html(it->second), "</li>");
    }
    h += "</ul>";
  }
  h += "<p><a href=\"/metrics\">metrics</a></p></body></html>\n";
  return Answer{http::status::ok, std::move(h), "text/html; charset=utf-8", {}};
}

}  // namespace cairn::node
