#include "cli_context.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "cairn/clock.h"
#include "cairn/status.h"
#include "cairn/strings.h"
#include "client.h"
#include "model_store.h"
#include "toml++/toml.h"

namespace cairn::client {

namespace {

constexpr int kMinTimeout = 1, kMaxTimeout = 3600;

std::string HomeDir() {
  const char* h = std::getenv("HOME");
  return h ? h : ".";
}

std::string XdgDir(const char* var, const std::string& fallback) {
  const char* v = std::getenv(var);
  return (v && *v) ? std::string(v) : HomeDir() + "/" + fallback;
}

// "~" and "~/x" name the home directory, as a shell would expand them.
std::string ExpandHome(const std::string& path) {
  if (path == "~") return HomeDir();
  if (path.rfind("~/", 0) == 0) return HomeDir() + path.substr(1);
  return path;
}

std::string Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return std::string(s);
}

}  // namespace

absl::Status LoadSettings(Settings* s) {
  s->store = DefaultStoreDir();
  const char* cfg_env = std::getenv("CAIRN_CONFIG");
  std::string path =
      cfg_env && *cfg_env ? cfg_env : XdgDir("XDG_CONFIG_HOME", ".config") + "/cairn/config.toml";
  s->config_path = path;
  if (::access(path.c_str(), F_OK) == 0) {
    toml::table t;
    try {
      t = toml::parse_file(path);
    } catch (const toml::parse_error& e) {
      return absl::InvalidArgumentError(
          StrCat("config ", path, ":", e.source().begin.line, ": ", std::string(e.description())));
    }
    const std::vector<std::string> keys = {"node",    "nodes",         "timeout", "trust",
                                           "store",   "cache",         "tls_ca",  "tls_cert",
                                           "tls_key", "store_max_size"};
    for (auto [key, val] : t) {
      std::string k(key.str());
      std::string at = StrCat("config ", path, ":", val.source().begin.line);
      if (std::find(keys.begin(), keys.end(), k) == keys.end()) {
        // The client's config has no tables: every key is at the top.
        std::string near = Nearest(k, keys);
        return absl::InvalidArgumentError(
            StrCat(at, ": unknown ", val.is_table() ? "table [" + k + "]" : "key " + k,
                   near.empty() ? "" : " (did you mean " + near + "?)",
                   val.is_table() ? " (the client's keys go at the top, without a table)" : ""));
      }
      if (k == "timeout") {
        if (!val.is_integer() || *val.value<int64_t>() < kMinTimeout ||
            *val.value<int64_t>() > kMaxTimeout) {
          return absl::InvalidArgumentError(
              StrCat(at, ": timeout must be a whole number of seconds from ", kMinTimeout, " to ",
                     kMaxTimeout));
        }
        s->timeout = static_cast<int>(*val.value<int64_t>());
        continue;
      }
      if (k == "node" || k == "nodes") {
        // One address, or a list of them: every mirror a pull may use.
        s->nodes.clear();
        if (val.is_string()) {
          const std::string list = *val.value<std::string>();  // Split's views point into it
          for (auto part : Split(list, ',')) {
            if (!Trim(part).empty()) s->nodes.push_back(Trim(part));
          }
        } else if (auto* arr = val.as_array(); arr && !arr->empty()) {
          for (auto& e : *arr) {
            if (!e.is_string()) {
              return absl::InvalidArgumentError(at + ": " + k + " must list HOST:PORT strings");
            }
            const std::string one = *e.value<std::string>();
            s->nodes.push_back(Trim(one));
          }
        } else {
          return absl::InvalidArgumentError(at + ": " + k +
                                            " must be \"HOST:PORT\" or a non-empty list of them");
        }
        continue;
      }
      if (!val.is_string()) return absl::InvalidArgumentError(at + ": " + k + " must be a string");
      std::string v = *val.value<std::string>();
      if (k == "store_max_size") {
        auto size = ParseSize(v);
        if (!size.ok())
          return absl::InvalidArgumentError(at + ": " + std::string(size.status().message()));
        s->store_max_size = *size;
        continue;
      }
      v = ExpandHome(v);
      if (k == "trust")
        s->trust = v;
      else if (k == "store" || k == "cache")
        s->store = v;
      else if (k == "tls_ca")
        s->tls_ca = v;
      else if (k == "tls_cert")
        s->tls_cert = v;
      else if (k == "tls_key")
        s->tls_key = v;
    }
  }
  if (const char* v = std::getenv("CAIRN_NODE"); v && *v) {
    s->nodes.clear();  // comma-separated
    for (auto part : Split(v, ',')) {
      if (!Trim(part).empty()) s->nodes.push_back(Trim(part));
    }
  }
  if (const char* v = std::getenv("CAIRN_TRUST"); v && *v) s->trust = v;
  if (const char* v = std::getenv("CAIRN_TLS_CA"); v && *v) s->tls_ca = v;
  if (const char* v = std::getenv("CAIRN_CACHE"); v && *v) s->store = ExpandHome(v);
  if (const char* v = std::getenv("CAIRN_STORE"); v && *v) s->store = ExpandHome(v);
  if (const char* v = std::getenv("CAIRN_TIMEOUT"); v && *v) {
    if (!ParseInt(std::string_view(v), &s->timeout) || s->timeout < kMinTimeout ||
        s->timeout > kMaxTimeout) {
      return absl::InvalidArgumentError(
          StrCat("CAIRN_TIMEOUT must be a whole number of seconds from ", kMinTimeout, " to ",
                 kMaxTimeout));
    }
  }
  return absl::OkStatus();
}

void CliContext::AddNode(CLI::App* c) {
  c->add_option("--node", node_flag_,
                "node HOST:PORT; repeat to use several mirrors (default: CAIRN_NODE or config)");
  c->add_option("--timeout", timeout_flag_, "seconds to wait for the node per call (default 15)")
      ->check(CLI::Range(kMinTimeout, kMaxTimeout));
  c->add_option("--tls-ca", tls_ca_flag_,
                "connect over TLS, trusting this CA (PEM; default: CAIRN_TLS_CA or config)");
  c->add_option("--tls-cert", tls_cert_flag_, "client certificate for mutual TLS (PEM)");
  c->add_option("--tls-key", tls_key_flag_, "its private key (PEM)");
}

void CliContext::AddTrust(CLI::App* c) {
  c->add_option("--trust", trust_flag_, "trust root file (default: CAIRN_TRUST or config)");
}

void CliContext::AddStore(CLI::App* c) {
  c->add_option("--store", store_flag_,
                "the managed store (default: CAIRN_STORE, store in config, $XDG_DATA_HOME/cairn)");
  c->add_option("--cache", store_flag_, "the old name of --store")->group("");
}

void CliContext::AddJson(CLI::App* c) { c->add_flag("--json", as_json, "machine-readable output"); }

void CliContext::ApplyFlags() {
  Settings& set = settings;
  if (!node_flag_.empty()) set.nodes = node_flag_;
  if (!trust_flag_.empty()) set.trust = trust_flag_;
  if (!store_flag_.empty()) set.store = store_flag_;
  if (timeout_flag_ > 0) set.timeout = timeout_flag_;
  if (!tls_ca_flag_.empty()) set.tls_ca = tls_ca_flag_;
  if (!tls_cert_flag_.empty()) set.tls_cert = tls_cert_flag_;
  if (!tls_key_flag_.empty()) set.tls_key = tls_key_flag_;
}

bool CliContext::tty() const { return ::isatty(2) && !as_json; }

absl::Status CliContext::NeedNode() const {
  if (settings.nodes.empty()) {
    return absl::InvalidArgumentError(
        "no node: pass --node HOST:PORT, set CAIRN_NODE, or set node in " + settings.config_path);
  }
  for (const auto& n : settings.nodes) CAIRN_RETURN_IF_ERROR(ParseNodeAddress(n).status());
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Connection>> CliContext::Connect() const {
  CAIRN_RETURN_IF_ERROR(NeedNode());
  CAIRN_ASSIGN_OR_RETURN(auto tls,
                         TlsOptions::Load(settings.tls_ca, settings.tls_cert, settings.tls_key));
  if (settings.nodes.size() == 1) return Connection::Open(settings.nodes[0], settings.timeout, tls);
  // Several: the first that answers, named, since the others are not used.
  std::vector<std::string> unreachable;
  CAIRN_ASSIGN_OR_RETURN(auto conns, OpenAll(settings.nodes, settings.timeout, &unreachable, tls));
  std::fprintf(stderr, "cairn: using %s (the first reachable of %zu nodes)\n",
               conns[0]->address().c_str(), settings.nodes.size());
  return std::move(conns[0]);
}

absl::StatusOr<std::vector<std::unique_ptr<Connection>>> CliContext::ConnectAll() const {
  CAIRN_RETURN_IF_ERROR(NeedNode());
  CAIRN_ASSIGN_OR_RETURN(auto tls,
                         TlsOptions::Load(settings.tls_ca, settings.tls_cert, settings.tls_key));
  std::vector<std::string> unreachable;
  auto conns = OpenAll(settings.nodes, settings.timeout, &unreachable, tls);
  if (conns.ok()) {
    for (const auto& u : unreachable) std::fprintf(stderr, "cairn: warning: %s\n", u.c_str());
  }
  return conns;
}

absl::StatusOr<std::vector<std::unique_ptr<Connection>>> CliContext::ConnectEvery() const {
  CAIRN_RETURN_IF_ERROR(NeedNode());
  CAIRN_ASSIGN_OR_RETURN(auto tls,
                         TlsOptions::Load(settings.tls_ca, settings.tls_cert, settings.tls_key));
  std::vector<std::unique_ptr<Connection>> out;
  std::vector<std::string> errors;
  // In parallel, each waiting its full timeout: no node is skipped for being slow.
  std::vector<absl::StatusOr<std::unique_ptr<Connection>>> got;
  for (size_t i = 0; i < settings.nodes.size(); ++i) got.emplace_back(absl::UnknownError(""));
  {
    std::vector<std::thread> threads;
    for (size_t i = 0; i < settings.nodes.size(); ++i) {
      threads.emplace_back(
          [&, i] { got[i] = Connection::Open(settings.nodes[i], settings.timeout, tls); });
    }
    for (auto& t : threads) t.join();
  }
  for (auto& g : got) {
    if (g.ok()) {
      out.push_back(std::move(*g));
    } else {
      errors.push_back(std::string(g.status().message()));
    }
  }
  if (!errors.empty()) {
    return absl::UnavailableError(
        StrCat(StrJoin(errors, "; "),
               settings.nodes.size() > 1 ? "; nothing was published to any node" : ""));
  }
  return out;
}

absl::StatusOr<TrustRootView> CliContext::LoadTrust() const {
  if (settings.trust.empty()) {
    return absl::InvalidArgumentError(
        "no trust root: pass --trust FILE, set CAIRN_TRUST, or set trust in " +
        settings.config_path);
  }
  return TrustRootView::Load(settings.trust, SystemNowUnix());
}

std::vector<Connection*> Raw(const std::vector<std::unique_ptr<Connection>>& conns) {
  std::vector<Connection*> out;
  for (const auto& c : conns) out.push_back(c.get());
  return out;
}

}  // namespace cairn::client
