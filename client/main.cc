// cairn: the Cairn command-line client.
#include <grpc/support/log.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>

#include "CLI/CLI.hpp"
#include "cairn/crypto.h"
#include "cairn/objects.h"
#include "cairn/clock.h"
#include "cairn/transport/grpc_status.h"
#include "cairn/verify.h"
#include "cairn/status.h"
#include "cairn/trust.h"
#include "cairn/tuning.h"
#include "cli_util.h"
#include "client.h"
#include "nlohmann/json.hpp"
#include "progress.h"
#include "toml++/toml.h"
#include "trust_admin.h"
#include "trust_cmd.h"

namespace {

using cairn::StrCat;
using json = nlohmann::json;

// Defaults: config file < CAIRN_* environment < flags.
struct Settings {
  std::vector<std::string> nodes;
  std::string trust;
  std::string cache;
  int timeout = 15;
  std::string tls_ca, tls_cert, tls_key;  // PEM files; no CA: plaintext
};

std::string HomeDir() {
  const char* h = std::getenv("HOME");
  return h ? h : ".";
}

std::string XdgDir(const char* var, const std::string& fallback) {
  const char* v = std::getenv(var);
  return (v && *v) ? std::string(v) : HomeDir() + "/" + fallback;
}

absl::Status LoadSettings(Settings* s) {
  s->cache = XdgDir("XDG_CACHE_HOME", ".cache") + "/cairn";
  const char* cfg_env = std::getenv("CAIRN_CONFIG");
  std::string path =
      cfg_env && *cfg_env ? cfg_env : XdgDir("XDG_CONFIG_HOME", ".config") + "/cairn/config.toml";
  if (::access(path.c_str(), F_OK) == 0) {
    toml::table t;
    try {
      t = toml::parse_file(path);
    } catch (const toml::parse_error& e) {
      return absl::InvalidArgumentError(
          StrCat("config ", path, ":", e.source().begin.line, ": ", std::string(e.description())));
    }
    for (auto [key, val] : t) {
      std::string k(key.str());
      if (k == "timeout") {
        if (!val.is_integer())
          return absl::InvalidArgumentError("config " + path + ": timeout must be an integer");
        s->timeout = static_cast<int>(*val.value<int64_t>());
        continue;
      }
      if (k == "node" || k == "nodes") {
        // One address, or a list of them: every mirror a pull may use.
        s->nodes.clear();
        if (val.is_string()) {
          s->nodes.push_back(*val.value<std::string>());
        } else if (auto* arr = val.as_array(); arr && !arr->empty()) {
          for (auto& e : *arr) {
            if (!e.is_string())
              return absl::InvalidArgumentError("config " + path + ": " + k +
                                                " must list HOST:PORT strings");
            s->nodes.push_back(*e.value<std::string>());
          }
        } else {
          return absl::InvalidArgumentError("config " + path + ": " + k +
                                            " must be \"HOST:PORT\" or a non-empty list of them");
        }
        continue;
      }
      if (!val.is_string()) {
        return absl::InvalidArgumentError("config " + path + ": " + k + " must be a string");
      }
      std::string v = *val.value<std::string>();
      if (k == "trust")
        s->trust = v;
      else if (k == "cache")
        s->cache = v;
      else if (k == "tls_ca")
        s->tls_ca = v;
      else if (k == "tls_cert")
        s->tls_cert = v;
      else if (k == "tls_key")
        s->tls_key = v;
      else
        return absl::InvalidArgumentError("config " + path + ": unknown key " + k);
    }
  }
  if (const char* v = std::getenv("CAIRN_NODE"); v && *v) {
    s->nodes.clear();  // comma-separated
    for (auto part : cairn::Split(v, ',')) {
      if (!part.empty()) s->nodes.emplace_back(part);
    }
  }
  if (const char* v = std::getenv("CAIRN_TRUST"); v && *v) s->trust = v;
  if (const char* v = std::getenv("CAIRN_TLS_CA"); v && *v) s->tls_ca = v;
  if (const char* v = std::getenv("CAIRN_CACHE"); v && *v) s->cache = v;
  if (const char* v = std::getenv("CAIRN_TIMEOUT"); v && *v) {
    if (!cairn::ParseInt(std::string_view(v), &s->timeout) || s->timeout <= 0) {
      return absl::InvalidArgumentError("CAIRN_TIMEOUT must be a positive number of seconds");
    }
  }
  return absl::OkStatus();
}

using cairn::client::Fail;
using cairn::client::PrintJson;

json SourcesJson(const std::vector<cairn::client::PullResult::Source>& sources) {
  json out = json::array();
  for (const auto& s : sources) {
    out.push_back(
        {{"address", s.address}, {"bytes", s.bytes}, {"chunks", s.chunks}, {"dropped", s.demoted}});
  }
  return out;
}

absl::Status NeedNode(const Settings& s) {
  if (s.nodes.empty()) {
    return absl::InvalidArgumentError(
        "no node: pass --node HOST:PORT, set CAIRN_NODE, or node in config.toml");
  }
  return absl::OkStatus();
}

// The first node (commands that talk to one node: publish, ls, lineage).
absl::StatusOr<std::unique_ptr<cairn::Connection>> Connect(const Settings& s) {
  CAIRN_RETURN_IF_ERROR(NeedNode(s));
  CAIRN_ASSIGN_OR_RETURN(auto tls,
                         cairn::TlsOptions::Load(s.tls_ca, s.tls_cert, s.tls_key));
  return cairn::Connection::Open(s.nodes[0], s.timeout, tls);
}

// Every reachable node; warns about the others.
absl::StatusOr<std::vector<std::unique_ptr<cairn::Connection>>> ConnectAll(
    const Settings& s) {
  CAIRN_RETURN_IF_ERROR(NeedNode(s));
  CAIRN_ASSIGN_OR_RETURN(auto tls,
                         cairn::TlsOptions::Load(s.tls_ca, s.tls_cert, s.tls_key));
  std::vector<std::string> unreachable;
  auto conns = cairn::client::OpenAll(s.nodes, s.timeout, &unreachable, tls);
  if (conns.ok()) {
    for (const auto& u : unreachable) std::fprintf(stderr, "cairn: warning: %s\n", u.c_str());
  }
  return conns;
}

std::vector<cairn::Connection*> Raw(
    const std::vector<std::unique_ptr<cairn::Connection>>& conns) {
  std::vector<cairn::Connection*> out;
  for (const auto& c : conns) out.push_back(c.get());
  return out;
}

absl::StatusOr<cairn::TrustRootView> LoadTrust(const Settings& s) {
  if (s.trust.empty()) {
    return absl::InvalidArgumentError(
        "no trust root: pass --trust FILE, set CAIRN_TRUST, or trust in config.toml");
  }
  return cairn::TrustRootView::Load(s.trust, cairn::SystemNowUnix());
}

}  // namespace

int main(int argc, char** argv) {
  cairn::TuneProcess(argv, /*max_arenas=*/2);
  // gRPC's own log lines (a failed TLS handshake, say) would break the
  // one-line error contract; what went wrong comes back as a status anyway.
  // CAIRN_GRPC_LOG=1 keeps them for debugging.
  if (const char* v = std::getenv("CAIRN_GRPC_LOG"); !v || std::string(v) != "1") {
    gpr_set_log_function([](gpr_log_func_args*) {});
  }
  CLI::App app{"cairn: pull, publish and verify open model weights from Cairn mirrors"};
  app.require_subcommand(1);
  Settings set;
  {
    absl::Status st = LoadSettings(&set);
    if (!st.ok()) return Fail(st);
  }
  bool as_json = false;
  std::vector<std::string> node_flag;
  std::string trust_flag, cache_flag, tls_ca_flag, tls_cert_flag, tls_key_flag;
  int timeout_flag = 0;
  auto add_node = [&](CLI::App* c) {
    c->add_option("--node", node_flag,
                  "node HOST:PORT; repeat to use several mirrors (default: CAIRN_NODE or config)");
    c->add_option("--timeout", timeout_flag, "seconds to wait for the node per call (default 15)");
    c->add_option("--tls-ca", tls_ca_flag,
                  "connect over TLS, trusting this CA (PEM; default: CAIRN_TLS_CA or config)");
    c->add_option("--tls-cert", tls_cert_flag, "client certificate for mutual TLS (PEM)");
    c->add_option("--tls-key", tls_key_flag, "its private key (PEM)");
  };
  auto add_trust = [&](CLI::App* c, bool required_note) {
    c->add_option("--trust", trust_flag, "trust root file (default: CAIRN_TRUST or config)");
  };
  auto add_json = [&](CLI::App* c) { c->add_flag("--json", as_json, "machine-readable output"); };

  // keygen
  std::string key_out;
  auto* keygen = app.add_subcommand("keygen", "make an Ed25519 key pair (KEY, KEY.pub)");
  keygen->add_option("--out", key_out, "private key file to write (mode 0600)")->required();
  add_json(keygen);

  // trust
  cairn::client::TrustCommands trust_cmds(&app, &as_json, add_node);

  // publish
  cairn::client::PublishOptions po;
  uint64_t tag_version = 0;
  uint32_t avg_chunk = 0;
  auto* publish = app.add_subcommand("publish", "publish a directory as a signed release");
  publish->add_option("DIR", po.dir, "directory to publish")->required();
  publish->add_option("--name", po.name, "NS/MODEL")->required();
  publish->add_option("--version", po.version, "release version (immutable)")->required();
  publish->add_option("--key", po.key_paths, "publisher private key (repeat for co-signers)")
      ->required();
  publish->add_option("--tag", po.tag, "tag to point at the release (default latest; '' for none)");
  publish->add_option("--tag-version", tag_version, "tag record version (default: node's + 1)");
  publish->add_option("--tag-expires-days", po.tag_expires_days, "tag validity (default 90)");
  publish->add_option("--base", po.base, "parent release NS/MODEL@sha256:... (or NS/MODEL:TAG)");
  publish->add_option("--relation", po.relation, "finetune|quantization|adapter|merge|other");
  publish->add_option("--license", po.license, "license identifier (e.g. apache-2.0)");
  publish->add_option("--avg-chunk", avg_chunk, "average chunk size in bytes (default 65536)");
  add_node(publish);
  add_json(publish);

  // sign
  std::string sign_ref;
  std::vector<std::string> sign_keys;
  auto* sign = app.add_subcommand("sign", "co-sign a release waiting for signatures on a node");
  sign->add_option("REF", sign_ref, "NS/MODEL@sha256:... (as printed by cairn publish)")
      ->required();
  sign->add_option("--key", sign_keys, "publisher private key; repeatable")->required();
  add_node(sign);
  add_trust(sign, false);
  add_json(sign);

  // pull
  cairn::client::PullOptions pl;
  bool do_fsync = false;
  auto* pull = app.add_subcommand("pull", "fetch and verify a release into a directory");
  pull->add_option("REF", pl.ref, "NS/MODEL[:TAG|@sha256:...]")->required();
  pull->add_option("--out", pl.out, "directory to write")->required();
  pull->add_option("--cache", cache_flag, "chunk cache directory (default $XDG_CACHE_HOME/cairn)");
  pull->add_flag(
      "--fsync", do_fsync,
      "fdatasync each file before renaming it into place (survives a power loss; slower)");
  bool no_fsync_compat = false;
  pull->add_flag("--no-fsync", no_fsync_compat, "the default; kept for scripts")->group("");
  size_t window_mib = 0;
  pull->add_option("--window-mib", window_mib, "most MiB one node may owe at a time (default 16)");
  pull->add_option("--streams", pl.streams_per_node,
                   "parallel connections to each node, 1-8 (default 2; more helps on lossy links)")
      ->check(CLI::Range(1, 8));
  pull->add_option("--min-rate", pl.min_rate,
                   "bytes/s a node must sustain while it owes chunks (default 32768)");
  bool no_trust_update = false;
  pull->add_flag("--no-trust-update", no_trust_update,
                 "judge by the trust file as it is (default: first walk it forward to the newest "
                 "root the nodes hold)");
  pull->add_option("--stall-seconds", pl.stall_seconds,
                   "drop a node that sends nothing for this long (default 10)");
  add_node(pull);
  add_trust(pull, true);
  add_json(pull);

  // verify
  std::string v_dir;
  auto* verify = app.add_subcommand("verify", "re-check a pulled tree against its signed manifest");
  verify->add_option("DIR", v_dir, "pulled directory")->required();
  add_trust(verify, true);
  add_json(verify);

  // info, ls, lineage
  std::string ref_arg, prefix_arg;
  auto* info = app.add_subcommand("info", "show a release the node holds (exit 0 iff it does)");
  info->add_option("NAME", ref_arg, "NS/MODEL[:TAG|@sha256:...]")->required();
  add_node(info);
  add_trust(info, false);
  add_json(info);
  auto* status =
      app.add_subcommand("status", "a node's identity, feed, and how its upstreams are followed");
  add_node(status);
  add_json(status);
  auto* ls = app.add_subcommand("ls", "list names, releases and tags on a node");
  ls->add_option("PREFIX", prefix_arg, "namespace/ or name prefix");
  add_node(ls);
  add_json(ls);
  auto* lineage =
      app.add_subcommand("lineage", "parents (signed) and children (known to the node)");
  lineage->add_option("NAME", ref_arg, "NS/MODEL[:TAG|@sha256:...]")->required();
  add_node(lineage);
  add_trust(lineage, false);
  add_json(lineage);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (!node_flag.empty()) set.nodes = node_flag;
  if (!trust_flag.empty()) set.trust = trust_flag;
  if (!cache_flag.empty()) set.cache = cache_flag;
  if (timeout_flag > 0) set.timeout = timeout_flag;
  if (!tls_ca_flag.empty()) set.tls_ca = tls_ca_flag;
  if (!tls_cert_flag.empty()) set.tls_cert = tls_cert_flag;
  if (!tls_key_flag.empty()) set.tls_key = tls_key_flag;
  const bool tty = ::isatty(2) && !as_json;

  if (*keygen) {
    auto k = cairn::SigningKey::Generate();
    if (!k.ok()) return Fail(k.status());
    absl::Status st = (*k)->Save(key_out);
    if (!st.ok()) return Fail(st);
    if (as_json)
      PrintJson({{"key_id", (*k)->key_id()}, {"private", key_out}, {"public", key_out + ".pub"}});
    else
      std::printf("%s\n", (*k)->key_id().c_str());
    return 0;
  }

  if (trust_cmds.parsed()) return trust_cmds.Run([&] { return ConnectAll(set); });

  if (*publish) {
    if (tag_version > 0) po.tag_version = tag_version;
    if (avg_chunk > 0) {
      if (avg_chunk < 1024 || avg_chunk > 256 * 1024 || (avg_chunk & (avg_chunk - 1)) != 0) {
        return Fail(
            absl::InvalidArgumentError("--avg-chunk must be a power of two in 1 KiB..256 KiB"));
      }
      po.chunker = cairn::ChunkerParams::ForAverage(avg_chunk);
    }
    po.progress = tty;
    auto conn = Connect(set);
    if (!conn.ok()) return Fail(conn.status());
    auto r = cairn::client::Publish(**conn, po);
    if (!r.ok()) return Fail(r.status());
    if (as_json) {
      PrintJson({{"manifest", r->manifest},
                 {"name", r->name},
                 {"version", r->version},
                 {"tag", r->tag},
                 {"tag_version", r->tag_version},
                 {"files", r->files},
                 {"bytes_total", r->bytes_total},
                 {"bytes_uploaded", r->bytes_uploaded},
                 {"chunks_total", r->chunks_total},
                 {"chunks_uploaded", r->chunks_uploaded},
                 {"already_present", r->already_present},
                 {"pending", r->pending},
                 {"signatures", r->signatures},
                 {"signatures_needed", r->signatures_needed},
                 {"seconds", r->seconds}});
    } else if (r->pending) {
      std::printf(
          "uploaded %s %s %s: pending, %u of %u signatures\n  each co-signer runs: cairn sign "
          "%s@%s --key KEY --node %s\n",
          r->name.c_str(), r->version.c_str(), r->manifest.c_str(), r->signatures,
          r->signatures_needed, r->name.c_str(), r->manifest.c_str(), (*conn)->address().c_str());
    } else {
      using cairn::client::Progress;
      std::printf(
          "published %s %s %s\n  %lu files, %s; uploaded %s in %lu of %lu chunks (%.1fs)%s\n",
          r->name.c_str(), r->version.c_str(), r->manifest.c_str(),
          static_cast<unsigned long>(r->files), Progress::Bytes(r->bytes_total).c_str(),
          Progress::Bytes(r->bytes_uploaded).c_str(),
          static_cast<unsigned long>(r->chunks_uploaded),
          static_cast<unsigned long>(r->chunks_total), r->seconds,
          r->tag.empty() ? "" : StrCat("\n  tag ", r->tag, " -> v", r->tag_version).c_str());
    }
    return 0;
  }

  if (*sign) {
    auto keys = cairn::client::LoadPrivateKeys(sign_keys);
    if (!keys.ok()) return Fail(keys.status());
    std::optional<cairn::TrustRootView> tr;
    if (!set.trust.empty()) {
      auto t = LoadTrust(set);
      if (!t.ok()) return Fail(t.status());
      tr = std::move(*t);
    }
    auto conn = Connect(set);
    if (!conn.ok()) return Fail(conn.status());
    std::vector<const cairn::SigningKey*> ptrs;
    for (const auto& k : *keys) ptrs.push_back(k.get());
    auto r = cairn::client::CoSign(**conn, sign_ref, ptrs, tr ? &*tr : nullptr);
    if (!r.ok()) return Fail(r.status());
    if (as_json) {
      PrintJson({{"manifest", r->manifest},
                 {"name", r->name},
                 {"version", r->version},
                 {"pending", r->pending},
                 {"signatures", r->signatures},
                 {"signatures_needed", r->signatures_needed}});
    } else {
      std::printf("%s %s %s: %s (%u of %u signatures)\n", r->name.c_str(), r->version.c_str(),
                  r->manifest.c_str(), r->pending ? "still pending" : "published", r->signatures,
                  r->signatures_needed);
    }
    return 0;
  }

  if (*pull) {
    if (set.trust.empty()) return Fail(LoadTrust(set).status());
    auto conns = ConnectAll(set);
    if (!conns.ok()) return Fail(conns.status());
    if (!no_trust_update) {
      // TUF's client workflow: first move the trust root forward along the
      // chain the mirrors hold (each version verified by the one before), so
      // a revocation takes effect before anything is judged by the old root.
      std::vector<std::string> refused;
      auto up = cairn::client::UpdateTrustFile(Raw(*conns), set.trust, &refused);
      for (const auto& r : refused) {
        std::fprintf(stderr, "cairn: warning: trust roots refused: %s\n", r.c_str());
      }
      if (up.ok() && up->to > up->from) {
        std::fprintf(stderr, "cairn: trust root updated v%lu -> v%lu (from %s)\n",
                     static_cast<unsigned long>(up->from), static_cast<unsigned long>(up->to),
                     up->source.c_str());
      }
    }
    auto tr = LoadTrust(set);
    if (!tr.ok()) return Fail(tr.status());
    pl.cache_dir = set.cache;
    pl.fsync = do_fsync;
    if (window_mib > 0) pl.window_bytes = window_mib << 20;
    pl.progress = tty;
    pl.state_dir = cairn::client::DefaultStateDir();
    pl.rate_seconds = std::max(1, pl.stall_seconds);
    pl.log = [](const std::string& line) { std::fprintf(stderr, "cairn: %s\n", line.c_str()); };
    auto r = cairn::client::Pull(Raw(*conns), *tr, pl);
    if (!r.ok()) return Fail(r.status());
    if (as_json) {
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
      using cairn::client::Progress;
      std::printf(
          "pulled %s %s %s into %s\n  %lu files, %s; fetched %s (%lu chunks), %lu chunks from "
          "cache (%.1fs)\n",
          r->name.c_str(), r->version.c_str(), r->manifest.c_str(), pl.out.c_str(),
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

  if (*verify) {
    auto tr = LoadTrust(set);
    if (!tr.ok()) return Fail(tr.status());
    auto r = cairn::client::VerifyTree(v_dir, *tr);
    if (!r.ok()) return Fail(r.status());
    if (as_json) {
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
        std::printf("verified %s %s %s: %lu files OK\n", r->name.c_str(), r->version.c_str(),
                    r->manifest.c_str(), static_cast<unsigned long>(r->files_ok));
      }
    }
    if (!r->problems.empty()) {
      return Fail(absl::DataLossError(
          StrCat(r->problems.size(), " file(s) differ from the signed manifest")));
    }
    return 0;
  }

  auto conns = ConnectAll(set);
  if (!conns.ok()) return Fail(conns.status());
  auto* conn = &(*conns)[0];  // ls, lineage, status: the first reachable node
  std::optional<cairn::TrustRootView> tr;
  if (!set.trust.empty() && (*info || *lineage)) {
    auto t = LoadTrust(set);
    if (!t.ok()) return Fail(t.status());
    tr = std::move(*t);
  }

  if (*info) {
    // Every node is asked; the highest valid tag version wins.
    auto mr = cairn::client::ResolveAcross(Raw(*conns), tr ? &*tr : nullptr, ref_arg);
    if (!mr.ok()) return Fail(mr.status());
    if (conns->size() > 1) {
      for (const auto& w : mr->warnings) std::fprintf(stderr, "cairn: warning: %s\n", w.c_str());
    }
    const cairn::client::Resolved* r = &mr->resolved;
    if (tr && r->tag) {
      absl::Status st = cairn::client::CheckAndRecordTag(cairn::client::DefaultStateDir(), *tr,
                                                         *r->tag, (*conns)[mr->node]->address());
      if (!st.ok()) return Fail(st);
    }
    uint64_t bytes = 0;
    json files = json::array();
    for (const auto& f : r->manifest.files()) {
      bytes += f.size();
      files.push_back({{"path", f.path()}, {"size", f.size()}, {"sha256", f.sha256()}});
    }
    if (as_json) {
      PrintJson({{"manifest", r->digest},
                 {"name", r->manifest.name()},
                 {"version", r->manifest.version()},
                 {"bytes", bytes},
                 {"files", files},
                 {"license", r->manifest.license()},
                 {"verified", tr.has_value()},
                 {"tag_version", r->tag ? r->tag->version() : 0}});
    } else {
      std::printf(
          "%s %s %s%s\n  %d files, %s%s\n", r->manifest.name().c_str(),
          r->manifest.version().c_str(), r->digest.c_str(),
          tr ? " (signature verified)" : " (not verified: no --trust)", r->manifest.files_size(),
          cairn::client::Progress::Bytes(bytes).c_str(),
          r->manifest.license().empty() ? "" : (", license " + r->manifest.license()).c_str());
      for (const auto& f : r->manifest.files()) {
        std::printf("  %12lu  %s\n", static_cast<unsigned long>(f.size()), f.path().c_str());
      }
    }
    return 0;
  }

  if (*status) {
    auto stub = cairn::v1::Federation::NewStub((*conn)->channel());
    cairn::v1::NodeInfoResponse info;
    auto ctx = (*conn)->Context();
    absl::Status st = cairn::FromGrpc(stub->NodeInfo(ctx.get(), {}, &info), "node info");
    if (!st.ok()) return Fail(st);
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
           {"outside_window", u.outside_window()},
           {"tag_conflicts", u.tag_conflicts()},
           {"last_conflict", u.last_conflict()},
           {"policy", u.policy()}});
    }
    if (as_json) {
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
                 {"upstreams", ups}});
      return 0;
    }
    std::printf(
        "node %s%s at %s\n  trust root v%lu, %lu releases in %d namespace(s), feed head %lu, %s "
        "free\n",
        info.node_id().c_str(), info.region().empty() ? "" : (" (" + info.region() + ")").c_str(),
        (*conn)->address().c_str(), static_cast<unsigned long>(info.trust_version()),
        static_cast<unsigned long>(info.releases()), info.namespaces_size(),
        static_cast<unsigned long>(info.feed_head()),
        cairn::client::Progress::Bytes(info.free_bytes()).c_str());
    if (info.releases_withheld() + info.tags_withheld() > 0) {
      std::printf(
          "  withheld: %lu release(s), %lu tag(s) no longer verify under trust root v%lu "
          "(revoked or undelegated keys); kept on disk, not served\n",
          static_cast<unsigned long>(info.releases_withheld()),
          static_cast<unsigned long>(info.tags_withheld()),
          static_cast<unsigned long>(info.trust_version()));
    }
    if (info.upstreams_size() == 0) std::printf("  follows no upstream\n");
    for (const auto& u : info.upstreams()) {
      uint64_t behind = u.upstream_head() > u.cursor() ? u.upstream_head() - u.cursor() : 0;
      std::string fetching = u.bytes_behind() > 0
                                 ? StrCat(" (", cairn::client::Progress::Bytes(u.bytes_behind()),
                                          " of the current release to go)")
                                 : "";
      if (u.bytes_per_second() > 0) {
        fetching += StrCat(", ", cairn::client::Progress::Bytes(u.bytes_per_second()), "/s");
      }
      std::printf(
          "  upstream %s: %lu events behind (cursor %lu of %lu), %lu releases, %s fetched%s%s%s\n",
          u.address().c_str(), static_cast<unsigned long>(behind),
          static_cast<unsigned long>(u.cursor()), static_cast<unsigned long>(u.upstream_head()),
          static_cast<unsigned long>(u.releases_committed()),
          cairn::client::Progress::Bytes(u.bytes_fetched()).c_str(), fetching.c_str(),
          u.events_refused() ? StrCat(", ", u.events_refused(), " refused").c_str() : "",
          u.last_error().empty() ? "" : ("; last error: " + u.last_error()).c_str());
      std::printf("    policy: %s (%lu releases skipped by it)%s\n", u.policy().c_str(),
                  static_cast<unsigned long>(u.events_outside_policy()),
                  u.outside_window() ? "; waiting for its time window" : "");
      if (u.tag_conflicts() > 0) {
        std::printf("    %lu tag conflict(s) (equal version, different release); latest: %s\n",
                    static_cast<unsigned long>(u.tag_conflicts()), u.last_conflict().c_str());
      }
    }
    return 0;
  }

  if (*ls) {
    cairn::v1::ListRequest req;
    req.set_prefix(prefix_arg);
    cairn::v1::ListResponse resp;
    auto ctx = (*conn)->Context();
    absl::Status st =
        cairn::FromGrpc((*conn)->registry()->List(ctx.get(), req, &resp), "list");
    if (!st.ok()) return Fail(st);
    json out = json::array();
    for (const auto& e : resp.entries()) {
      json rel = json::array(), tags = json::array();
      for (const auto& r : e.releases()) {
        rel.push_back({{"version", r.version()},
                       {"manifest", r.manifest_digest()},
                       {"bytes", r.bytes()},
                       {"files", r.files()}});
      }
      for (const auto& t : e.tags()) {
        tags.push_back(
            {{"tag", t.tag()}, {"version", t.version()}, {"manifest", t.manifest_digest()}});
      }
      out.push_back({{"name", e.name()}, {"releases", rel}, {"tags", tags}});
      if (!as_json) {
        std::printf("%s\n", e.name().c_str());
        for (const auto& r : e.releases()) {
          std::printf("  %-16s %s  %s\n", r.version().c_str(), r.manifest_digest().c_str(),
                      cairn::client::Progress::Bytes(r.bytes()).c_str());
        }
        for (const auto& t : e.tags()) {
          std::printf("  :%-15s -> %s (v%lu)\n", t.tag().c_str(), t.manifest_digest().c_str(),
                      static_cast<unsigned long>(t.version()));
        }
      }
    }
    if (as_json) PrintJson(out);
    return 0;
  }

  if (*lineage) {
    auto r = cairn::client::ResolveVerified(**conn, tr ? &*tr : nullptr, ref_arg);
    if (!r.ok()) return Fail(r.status());
    cairn::v1::LineageRequest req;
    req.set_ref(ref_arg);
    cairn::v1::LineageResponse resp;
    auto ctx = (*conn)->Context();
    absl::Status st =
        cairn::FromGrpc((*conn)->registry()->Lineage(ctx.get(), req, &resp), "lineage");
    if (!st.ok()) return Fail(st);
    json parents = json::array(), children = json::array();
    for (const auto& p : r->manifest.parents()) {
      parents.push_back({{"name", p.name()},
                         {"manifest", p.manifest_digest()},
                         {"relation", cairn::RelationName(p.relation())}});
    }
    for (const auto& c : resp.children()) {
      children.push_back({{"name", c.name()},
                          {"version", c.version()},
                          {"manifest", c.manifest_digest()},
                          {"relation", cairn::RelationName(c.relation())}});
    }
    if (as_json) {
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
                    cairn::RelationName(p.relation()).c_str());
      }
      for (const auto& c : resp.children()) {
        std::printf("  child   %s %s@%s (%s)\n", c.name().c_str(), c.version().c_str(),
                    c.manifest_digest().c_str(), cairn::RelationName(c.relation()).c_str());
      }
    }
    return 0;
  }
  return 0;
}
