#include "config.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <functional>

#include "absl/strings/ascii.h"
#include "cairn/crypto.h"
#include "cairn/objects.h"
#include "cairn/status.h"
#include "cairn/strings.h"
#include "cairn/transport/address.h"
#include "toml++/toml.h"

namespace cairn::node {

absl::StatusOr<std::string> CanonicalLogLevel(const std::string& level);

namespace {

// Where a config error is: "config PATH:LINE".
std::string At(const std::string& path, const toml::node& n) {
  return StrCat("config ", path, ":", n.source().begin.line);
}

absl::Status Unknown(const std::string& where, const std::string& what, const std::string& key,
                     const std::vector<std::string>& valid) {
  std::string near = Nearest(key, valid);
  return absl::InvalidArgumentError(StrCat(where, ": unknown ", what, " ", key,
                                           near.empty() ? "" : " (did you mean " + near + "?)"));
}

// One key of a table: how to check and store its value. Returns an error
// message ("must be ...") or "".
using Setter = std::function<std::string(const toml::node&)>;

Setter Str(std::string* out) {
  return [out](const toml::node& v) -> std::string {
    if (!v.is_string()) return "must be a string";
    *out = *v.value<std::string>();
    return "";
  };
}

Setter Bool(bool* out) {
  return [out](const toml::node& v) -> std::string {
    if (!v.is_boolean()) return "must be true or false";
    *out = *v.value<bool>();
    return "";
  };
}

template <typename T>
Setter Int(T* out, int64_t lo, int64_t hi, std::string note = "") {
  return [out, lo, hi, note](const toml::node& v) -> std::string {
    if (!v.is_integer() || *v.value<int64_t>() < lo || *v.value<int64_t>() > hi) {
      return StrCat("must be a whole number from ", lo, " to ", hi, note);
    }
    *out = static_cast<T>(*v.value<int64_t>());
    return "";
  };
}

Setter Strings(std::vector<std::string>* out) {
  return [out](const toml::node& v) -> std::string {
    const toml::array* arr = v.as_array();
    if (arr == nullptr) return "must be an array of strings";
    for (const auto& e : *arr) {
      if (!e.is_string()) return "must hold only strings";
      out->push_back(*e.value<std::string>());
    }
    return "";
  };
}

// Applies `keys` to table `t`: every key must be known and well-typed. Each
// error is appended to *errs.
void ApplyTable(const toml::table& t, const std::string& path, const std::string& prefix,
                const std::vector<std::pair<std::string, Setter>>& keys,
                std::vector<std::string>* errs) {
  std::vector<std::string> names;
  for (const auto& [name, set] : keys) names.push_back(name);
  for (auto [key, val] : t) {
    std::string k(key.str());
    auto it = std::find_if(keys.begin(), keys.end(), [&](const auto& e) { return e.first == k; });
    if (it == keys.end()) {
      std::vector<std::string> qualified;
      for (const auto& n : names) qualified.push_back(prefix + n);
      errs->push_back(std::string(Unknown(At(path, val), "key", prefix + k, qualified).message()));
      continue;
    }
    if (std::string why = it->second(val); !why.empty()) {
      errs->push_back(StrCat(At(path, val), ": ", prefix, k, " ", why));
    }
  }
}

// A node address (HOST:PORT, tls:// or plain://), checked where it is written.
Setter Address(std::string* out, bool allow_port_zero) {
  return [out, allow_port_zero](const toml::node& v) -> std::string {
    if (!v.is_string()) return "must be a string";
    auto parsed = ParseNodeAddress(*v.value<std::string>(), allow_port_zero);
    if (!parsed.ok()) return std::string(parsed.status().message());
    *out = *v.value<std::string>();
    return "";
  };
}

Setter Addresses(std::vector<std::string>* out) {
  return [out](const toml::node& v) -> std::string {
    const toml::array* arr = v.as_array();
    if (arr == nullptr) return "must be an array of HOST:PORT strings";
    for (const auto& e : *arr) {
      if (!e.is_string()) return "must hold only strings";
      auto parsed = ParseNodeAddress(*e.value<std::string>());
      if (!parsed.ok()) return std::string(parsed.status().message());
      out->push_back(*e.value<std::string>());
    }
    return "";
  };
}

Setter OneOf(std::string* out, std::vector<std::string> allowed) {
  return [out, allowed](const toml::node& v) -> std::string {
    if (!v.is_string()) return "must be a string";
    std::string s = *v.value<std::string>();
    // Case does not matter ("SHA256" is sha256); the canonical spelling is kept.
    absl::AsciiStrToLower(&s);
    if (std::find(allowed.begin(), allowed.end(), s) == allowed.end()) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      return "must be one of " + list;
    }
    *out = s;
    return "";
  };
}

Setter LogLevel(std::string* out) {
  return [out](const toml::node& v) -> std::string {
    if (!v.is_string()) return "must be a string";
    auto l = CanonicalLogLevel(*v.value<std::string>());
    if (!l.ok()) return std::string(l.status().message());
    *out = *l;
    return "";
  };
}

constexpr int64_t kMaxLimit = 100000;

std::vector<std::pair<std::string, Setter>> S3Keys(ServeConfig* c) {
  return {
      {"endpoint", Str(&c->s3_endpoint)},
      {"region", Str(&c->s3_region)},
      {"pack_mib", Int(&c->s3_pack_mib, 1, 4096)},
      {"parallel_uploads", Int(&c->s3_parallel_uploads, 1, 64)},
      {"cache_mib", Int(&c->s3_cache_mib, 0, 1 << 30)},
      {"collector", Bool(&c->s3_collector)},
      {"answer_seconds", Int(&c->s3_answer_seconds, 1, 86400)},
  };
}

std::vector<std::pair<std::string, Setter>> NodeKeys(ServeConfig* c) {
  return {
      {"data", Str(&c->data)},
      {"listen", Address(&c->listen, /*allow_port_zero=*/true)},
      {"http", Address(&c->http, /*allow_port_zero=*/true)},
      {"trust", Str(&c->trust)},
      {"log_level", LogLevel(&c->log_level)},
      {"log_file", Str(&c->log_file)},
      {"log_max_bytes", Int(&c->log_max_bytes, 65536, INT64_MAX)},
      {"log_files", Int(&c->log_files, 1, 100)},
      {"region", Str(&c->region)},
      {"chunks", Str(&c->chunks)},
      {"verify_reads", Bool(&c->verify_reads)},
      {"upstreams", Addresses(&c->upstreams)},
      {"peers", Addresses(&c->peers)},
      {"tls_cert", Str(&c->tls_cert)},
      {"tls_key", Str(&c->tls_key)},
      {"tls_ca", Str(&c->tls_ca)},
      {"tls_require_client_cert", Bool(&c->tls_require_client_cert)},
      {"max_streams_per_peer", Int(&c->max_streams_per_peer, 1, kMaxLimit)},
      {"max_sessions_per_peer", Int(&c->max_sessions_per_peer, 1, kMaxLimit)},
      {"stream_idle_seconds", Int(&c->stream_idle_seconds, 1, 3600)},
      {"call_memory_mib", Int(&c->call_memory_mib, 64, 1 << 20)},
      {"max_streams_per_connection", Int(&c->max_streams_per_connection, 1, 1000)},
      {"upload_bytes_per_day", Int(&c->upload_bytes_per_day, 0, INT64_MAX, " (0: unlimited)")},
      {"max_bytes", Int(&c->max_bytes, 0, INT64_MAX, " (0: no cap)")},
      {"pin", Strings(&c->pins)},
      {"scrub_bytes_per_second",
       Int(&c->scrub_bytes_per_second, 0, INT64_MAX, " (0: no background scrub)")},
      {"scrub_interval_hours", Int(&c->scrub_interval_hours, 1, 24 * 366)},
      {"scrub_repair_retry_seconds", Int(&c->scrub_repair_retry_seconds, 1, 86400)},
      {"min_free_bytes", Int(&c->min_free_bytes, 0, INT64_MAX, " (0: no floor)")},
      {"gc_interval_hours",
       Int(&c->gc_interval_hours, 0, 24 * 366, " (0: only when asked, cairn-node gc)")},
      {"gc_grace_hours", Int(&c->gc_grace_hours, 0, 24 * 366)},
      {"gc_compact_below_percent",
       Int(&c->gc_compact_below_percent, 0, 100, " (0: never compact)")},
      {"gc_staged_retention_days", Int(&c->gc_staged_retention_days, 1, 366)},
      {"withheld_retention_days",
       Int(&c->withheld_retention_days, 0, 3660, " (0: keep withheld releases for ever)")},
      {"yanked_retention_days",
       Int(&c->yanked_retention_days, 0, 3660, " (0: keep yanked releases)")},
      {"pack_file_mib", Int(&c->pack_file_mib, 16, 65536)},
      {"import_from", OneOf(&c->import_from, {"loopback", "any", "none"})},
      {"drain_seconds", Int(&c->drain_seconds, 0, 3600)},
  };
}

std::vector<std::pair<std::string, Setter>> UpstreamKeys(ReplicationLoop::UpstreamConfig* uc,
                                                         std::vector<std::string>* windows) {
  return {
      {"address", Address(&uc->address, /*allow_port_zero=*/false)},
      {"include", Strings(&uc->policy.include)},
      {"exclude", Strings(&uc->policy.exclude)},
      {"tags", Strings(&uc->policy.tags)},
      {"windows", Strings(windows)},
      {"max_release_bytes", Int(&uc->policy.max_release_bytes, 0, INT64_MAX, " (0: no limit)")},
      {"max_bytes_per_second",
       Int(&uc->policy.max_bytes_per_second, 0, INT64_MAX, " (0: no limit)")},
      {"min_bytes_per_second", Int(&uc->min_bytes_per_second, 1, INT64_MAX)},
      {"streams", Int(&uc->streams, 1, 8)},
  };
}

std::vector<std::pair<std::string, Setter>> OnDemandKeys(ServeConfig* c) {
  return {
      {"enabled", Bool(&c->on_demand)},
      {"include", Strings(&c->on_demand_policy.include)},
      {"exclude", Strings(&c->on_demand_policy.exclude)},
      {"max_release_bytes",
       Int(&c->on_demand_policy.max_release_bytes, 0, INT64_MAX, " (0: no limit)")},
  };
}

std::vector<std::pair<std::string, Setter>> HttpKeys(ServeConfig* c) {
  return {
      {"max_connections", Int(&c->http_max_connections, 1, 1000000)},
      {"max_connections_per_client", Int(&c->http_max_connections_per_client, 1, 1000000)},
      {"requests_per_second_per_client",
       Int(&c->http_requests_per_second_per_client, 0, 10000000, " (0: no limit)")},
      {"tree_page_size", Int(&c->http_tree_page_size, 1, 100000)},
      {"max_read_ahead_mib", Int(&c->http_max_read_ahead_mib, 0, 1 << 20)},
      {"verify_reads", Bool(&c->http_verify_reads)},
      {"verify_reads_with", OneOf(&c->http_verify_reads_with, {"crc32c", "sha256"})},
      {"sendfile", Bool(&c->http_sendfile)},
  };
}

const std::vector<std::string> kLogLevels = {"trace", "debug",    "info", "warning",
                                             "error", "critical", "off"};

}  // namespace

std::string DefaultDataDir() {
  if (::geteuid() == 0) return "/var/lib/cairn";
  const char* xdg = std::getenv("XDG_DATA_HOME");
  if (xdg && *xdg) return std::string(xdg) + "/cairn/node";
  const char* home = std::getenv("HOME");
  return std::string(home ? home : ".") + "/.local/share/cairn/node";
}

absl::Status LoadConfig(const std::string& path, ServeConfig* c) {
  CAIRN_ASSIGN_OR_RETURN(std::string text, ReadFileLimited(path, 1 << 20));
  return ParseConfig(text, path, c);
}

absl::Status ParseConfig(std::string_view text, const std::string& path, ServeConfig* c) {
  toml::table t;
  try {
    t = toml::parse(text, path);
  } catch (const toml::parse_error& e) {
    return absl::InvalidArgumentError(cairn::StrCat("config ", path, ":", e.source().begin.line,
                                                    ": ", std::string(e.description())));
  }
  // Every error is collected, so one run names them all.
  std::vector<std::string> errs;
  // Top level: only the [node] and [quota] tables and [[upstream]] tables.
  // A key written above [node] would otherwise be silently ignored.
  std::vector<std::string> node_keys;
  for (const auto& [name, set] : NodeKeys(c)) node_keys.push_back("node." + name);
  for (auto [key, val] : t) {
    std::string k(key.str());
    if (k == "node" || k == "quota" || k == "upstream" || k == "on_demand" || k == "http" ||
        k == "s3" || k == "namespace_limits") {
      continue;
    }
    if (val.is_table() || val.is_array_of_tables()) {
      errs.push_back(std::string(Unknown(At(path, val), "table", "[" + k + "]",
                                         {"[node]", "[quota]", "[[upstream]]", "[on_demand]",
                                          "[http]", "[s3]", "[namespace_limits]"})
                                     .message()));
      continue;
    }
    std::string near = Nearest(k, node_keys);
    errs.push_back(StrCat(At(path, val), ": unknown top-level key ", k,
                          near.empty() ? " (keys go in [node])" : " (did you mean " + near + "?)"));
  }
  if (t.contains("upstream")) {
    const toml::array* ups = t["upstream"].as_array();
    if (ups == nullptr || !t["upstream"].is_array_of_tables()) {
      errs.push_back(At(path, *t.get("upstream")) + ": use [[upstream]] tables");
    } else {
      for (const auto& u : *ups) {
        const toml::table* ut = u.as_table();
        cairn::node::ReplicationLoop::UpstreamConfig uc;
        std::vector<std::string> windows;
        ApplyTable(*ut, path, "upstream.", UpstreamKeys(&uc, &windows), &errs);
        for (const auto& w : windows) {
          auto parsed = cairn::ReplicationPolicy::ParseWindow(w);
          if (!parsed.ok()) {
            errs.push_back(StrCat(At(path, u), ": upstream: ", parsed.status().message()));
            continue;
          }
          uc.policy.windows.push_back(*parsed);
        }
        if (uc.address.empty() && !ut->contains("address")) {
          errs.push_back(At(path, u) + ": [[upstream]] needs an address");
        }
        c->upstream_tables.push_back(std::move(uc));
      }
    }
  }
  // [quota]: publisher key id = bytes per day.
  if (t.contains("quota")) {
    const toml::table* q = t["quota"].as_table();
    if (q == nullptr) {
      errs.push_back(At(path, *t.get("quota")) + ": [quota] must be a table");
    } else {
      for (auto [key, val] : *q) {
        std::string k(key.str());
        if (!val.is_integer() || *val.value<int64_t>() < 0) {
          errs.push_back(At(path, val) + ": quota." + k +
                         " must be a number of bytes per day (0: unlimited)");
        } else if (k.size() != 32 || k.find_first_not_of("0123456789abcdef") != std::string::npos) {
          errs.push_back(At(path, val) + ": quota." + k +
                         ": keys are publisher key ids (32 hex digits)");
        } else {
          c->upload_quota_by_key.emplace_back(k, static_cast<uint64_t>(*val.value<int64_t>()));
        }
      }
    }
  }
  // [namespace_limits]: namespace = bytes of its releases held at most.
  if (t.contains("namespace_limits")) {
    const toml::table* q = t["namespace_limits"].as_table();
    if (q == nullptr) {
      errs.push_back(At(path, *t.get("namespace_limits")) + ": [namespace_limits] must be a table");
    } else {
      for (auto [key, val] : *q) {
        std::string k(key.str());
        if (!val.is_integer() || *val.value<int64_t>() <= 0) {
          errs.push_back(At(path, val) + ": namespace_limits." + k +
                         " must be a number of bytes above 0");
        } else if (!cairn::ValidateName(k + "/x").ok()) {
          errs.push_back(At(path, val) + ": namespace_limits." + k + ": not a namespace");
        } else {
          c->namespace_limits.emplace_back(k, static_cast<uint64_t>(*val.value<int64_t>()));
        }
      }
    }
  }
  for (const char* table : {"on_demand", "http", "s3"}) {
    if (!t.contains(table)) continue;
    const toml::table* tt = t[table].as_table();
    if (tt == nullptr) {
      errs.push_back(At(path, *t.get(table)) + ": [" + table + "] must be a table");
      continue;
    }
    ApplyTable(*tt, path, std::string(table) + ".",
               std::string(table) == "http" ? HttpKeys(c)
               : std::string(table) == "s3" ? S3Keys(c)
                                            : OnDemandKeys(c),
               &errs);
  }
  if (t.contains("node")) {
    const toml::table* node = t["node"].as_table();
    if (node == nullptr) {
      errs.push_back(At(path, *t.get("node")) + ": [node] must be a table");
    } else {
      ApplyTable(*node, path, "node.", NodeKeys(c), &errs);
    }
  }
  // A pin names a model (glob) or one release: NS/MODEL[@VERSION|@sha256:...].
  for (const std::string& pin : c->pins) {
    const size_t at = pin.find('@');
    std::string probe = pin.substr(0, at);
    std::replace(probe.begin(), probe.end(), '*', 'x');
    std::replace(probe.begin(), probe.end(), '?', 'x');
    bool ok = cairn::ValidateName(probe).ok();
    if (ok && at != std::string::npos) {
      const std::string what = pin.substr(at + 1);
      ok = what.starts_with("sha256:") ? cairn::ParseDigestName(what).ok()
                                       : cairn::ValidateVersion(what).ok();
      ok = ok && pin.find_first_of("*?[") == std::string::npos;
    }
    if (!ok) {
      errs.push_back(StrCat("config ", path, ": node.pin: '", pin,
                            "' is not NS/MODEL, a glob of it, NS/MODEL@VERSION or "
                            "NS/MODEL@sha256:<hex>"));
    }
  }
  if (errs.empty()) return absl::OkStatus();
  // In the file's order.
  const std::string prefix = StrCat("config ", path, ":");
  auto line_of = [&](const std::string& e) {
    int line = 0;
    if (e.rfind(prefix, 0) == 0) line = std::atoi(e.c_str() + prefix.size());
    return line;
  };
  std::stable_sort(errs.begin(), errs.end(), [&](const std::string& a, const std::string& b) {
    return line_of(a) < line_of(b);
  });
  return absl::InvalidArgumentError(StrJoin(errs, "\n"));
}

absl::StatusOr<std::string> CanonicalLogLevel(const std::string& level) {
  std::string l = absl::AsciiStrToLower(level);
  if (l == "warn") l = "warning";
  if (l == "err") l = "error";
  for (const auto& n : kLogLevels) {
    if (l == n) return n;
  }
  return absl::InvalidArgumentError("log level " + level + " is not one of " +
                                    StrJoin(kLogLevels, ", ") + " (any case)");
}

absl::Status ValidateConfig(ServeConfig* c) {
  CAIRN_ASSIGN_OR_RETURN(c->log_level, CanonicalLogLevel(c->log_level));
  auto listen = ParseNodeAddress(c->listen, /*allow_port_zero=*/true);
  if (!listen.ok()) return Annotate(listen.status(), "listen");
  if (!c->http.empty()) {
    auto http = ParseNodeAddress(c->http, /*allow_port_zero=*/true);
    if (!http.ok()) return Annotate(http.status(), "http");
  }
  for (const auto* list : {&c->upstreams, &c->peers}) {
    for (const auto& a : *list) {
      auto parsed = ParseNodeAddress(a);
      if (!parsed.ok()) return Annotate(parsed.status(), list == &c->peers ? "peer" : "upstream");
    }
  }
  for (const auto& u : c->upstream_tables) {
    auto parsed = ParseNodeAddress(u.address);
    if (!parsed.ok()) return Annotate(parsed.status(), "upstream");
  }
  if (c->max_streams_per_peer < 1 || c->max_streams_per_peer > kMaxLimit ||
      c->max_sessions_per_peer < 1 || c->max_sessions_per_peer > kMaxLimit) {
    return absl::InvalidArgumentError(
        StrCat("max_streams_per_peer and max_sessions_per_peer must be from 1 to ", kMaxLimit));
  }
  if (c->stream_idle_seconds < 1 || c->stream_idle_seconds > 3600) {
    return absl::InvalidArgumentError("stream_idle_seconds must be from 1 to 3600");
  }
  if (c->call_memory_mib < 64 || c->call_memory_mib > (1 << 20)) {
    return absl::InvalidArgumentError("call_memory_mib must be from 64 to 1048576");
  }
  if (c->max_streams_per_connection < 1 || c->max_streams_per_connection > 1000) {
    return absl::InvalidArgumentError("max_streams_per_connection must be from 1 to 1000");
  }
  return absl::OkStatus();
}

}  // namespace cairn::node
