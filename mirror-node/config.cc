#include "config.h"

#include <unistd.h>

#include <cstdlib>

#include "cairn/crypto.h"
#include "cairn/status.h"
#include "cairn/strings.h"
#include "toml++/toml.h"

namespace cairn::node {

namespace {

// A string array at t[key] into *out. InvalidArgument naming `where` otherwise.
absl::Status StringArray(const toml::table& t, const char* key, const std::string& where,
                         std::vector<std::string>* out) {
  if (!t.contains(key)) return absl::OkStatus();
  const toml::array* arr = t[key].as_array();
  if (arr == nullptr)
    return absl::InvalidArgumentError(where + "." + key + " must be an array of strings");
  for (const auto& e : *arr) {
    if (!e.is_string()) return absl::InvalidArgumentError(where + "." + key + " must hold strings");
    out->push_back(*e.value<std::string>());
  }
  return absl::OkStatus();
}

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
  // [[upstream]] tables: address, include, exclude, max_release_bytes.
  if (t.contains("upstream")) {
    const toml::array* ups = t["upstream"].as_array();
    if (ups == nullptr) {
      return absl::InvalidArgumentError("config " + path + ": use [[upstream]] tables");
    }
    for (const auto& u : *ups) {
      const toml::table* ut = u.as_table();
      std::string where = "config " + path + ": upstream";
      if (ut == nullptr) return absl::InvalidArgumentError(where + " must be a table");
      cairn::node::ReplicationLoop::UpstreamConfig uc;
      for (auto [key, val] : *ut) {
        std::string k(key.str());
        if (k == "address" && val.is_string()) {
          uc.address = *val.value<std::string>();
        } else if (k == "max_release_bytes" && val.is_integer() && *val.value<int64_t>() >= 0) {
          uc.policy.max_release_bytes = static_cast<uint64_t>(*val.value<int64_t>());
        } else if (k == "streams" && val.is_integer() && *val.value<int64_t>() >= 1 &&
                   *val.value<int64_t>() <= 8) {
          uc.streams = static_cast<int>(*val.value<int64_t>());
        } else if (k == "min_bytes_per_second" && val.is_integer() && *val.value<int64_t>() >= 1) {
          uc.min_bytes_per_second = static_cast<uint64_t>(*val.value<int64_t>());
        } else if (k == "max_bytes_per_second" && val.is_integer() && *val.value<int64_t>() >= 0) {
          uc.policy.max_bytes_per_second = static_cast<uint64_t>(*val.value<int64_t>());
        } else if (k != "include" && k != "exclude" && k != "tags" && k != "windows") {
          return absl::InvalidArgumentError(where + ": unknown key or wrong type: " + k);
        }
      }
      CAIRN_RETURN_IF_ERROR(StringArray(*ut, "include", where, &uc.policy.include));
      CAIRN_RETURN_IF_ERROR(StringArray(*ut, "exclude", where, &uc.policy.exclude));
      CAIRN_RETURN_IF_ERROR(StringArray(*ut, "tags", where, &uc.policy.tags));
      std::vector<std::string> windows;
      CAIRN_RETURN_IF_ERROR(StringArray(*ut, "windows", where, &windows));
      for (const auto& w : windows) {
        auto parsed = cairn::ReplicationPolicy::ParseWindow(w);
        if (!parsed.ok()) return cairn::Annotate(parsed.status(), where);
        uc.policy.windows.push_back(*parsed);
      }
      if (uc.address.empty()) return absl::InvalidArgumentError(where + " needs an address");
      c->upstream_tables.push_back(std::move(uc));
    }
  }
  // [quota]: publisher key id = bytes per day.
  if (t.contains("quota")) {
    const toml::table* q = t["quota"].as_table();
    if (q == nullptr)
      return absl::InvalidArgumentError("config " + path + ": [quota] must be a table");
    for (auto [key, val] : *q) {
      std::string k(key.str());
      if (!val.is_integer() || *val.value<int64_t>() < 0) {
        return absl::InvalidArgumentError("config " + path + ": quota." + k +
                                          " must be a number of bytes per day");
      }
      if (k.size() != 32 || k.find_first_not_of("0123456789abcdef") != std::string::npos) {
        return absl::InvalidArgumentError("config " + path + ": quota." + k +
                                          ": keys are publisher key ids (32 hex digits)");
      }
      c->upload_quota_by_key.emplace_back(k, static_cast<uint64_t>(*val.value<int64_t>()));
    }
  }
  if (!t.contains("node")) return absl::OkStatus();
  const toml::table* node = t["node"].as_table();
  if (node == nullptr) {
    return absl::InvalidArgumentError("config " + path + ": [node] must be a table");
  }
  for (auto [key, val] : *node) {
    std::string k(key.str());
    if (k == "upstreams" || k == "peers") {
      CAIRN_RETURN_IF_ERROR(StringArray(*node, k.c_str(), "config " + path + ": node",
                                        k == "peers" ? &c->peers : &c->upstreams));
      continue;
    }
    if (k == "verify_reads" || k == "tls_require_client_cert") {
      if (!val.is_boolean()) {
        return absl::InvalidArgumentError("config " + path + ": node." + k +
                                          " must be true or false");
      }
      (k == "verify_reads" ? c->verify_reads : c->tls_require_client_cert) = *val.value<bool>();
      continue;
    }
    if (k == "max_streams_per_peer" || k == "max_sessions_per_peer" ||
        k == "upload_bytes_per_day") {
      if (!val.is_integer() || *val.value<int64_t>() < 0 ||
          (k != "upload_bytes_per_day" && *val.value<int64_t>() > 100000)) {
        return absl::InvalidArgumentError("config " + path + ": node." + k +
                                          " must be a non-negative number" +
                                          (k == "upload_bytes_per_day" ? "" : " up to 100000"));
      }
      int64_t v = *val.value<int64_t>();
      if (k == "max_streams_per_peer") c->max_streams_per_peer = static_cast<int>(v);
      if (k == "max_sessions_per_peer") c->max_sessions_per_peer = static_cast<int>(v);
      if (k == "upload_bytes_per_day") c->upload_bytes_per_day = static_cast<uint64_t>(v);
      continue;
    }
    if (!val.is_string()) {
      return absl::InvalidArgumentError("config " + path + ": node." + k + " must be a string");
    }
    std::string v = *val.value<std::string>();
    if (k == "data")
      c->data = v;
    else if (k == "listen")
      c->listen = v;
    else if (k == "trust")
      c->trust = v;
    else if (k == "log_level")
      c->log_level = v;
    else if (k == "region")
      c->region = v;
    else if (k == "tls_cert")
      c->tls_cert = v;
    else if (k == "tls_key")
      c->tls_key = v;
    else if (k == "tls_ca")
      c->tls_ca = v;
    else
      return absl::InvalidArgumentError("config " + path + ": unknown key node." + k);
  }
  return absl::OkStatus();
}

}  // namespace cairn::node
