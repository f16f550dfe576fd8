// cairn-node: a Cairn mirror node.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "admin_cmd.h"
#include "bundle_cmd.h"
#include "cairn/repository.h"
#include "cairn/s3_store.h"
#include "cairn/status.h"
#include "cairn/strings.h"
#include "cairn/transport/address.h"
#include "cairn/tuning.h"
#include "config.h"
#include "gc_loop.h"
#include "http_gateway.h"
#include "logging.h"
#include "on_demand.h"
#include "replication_loop.h"
#include "scrub.h"
#include "server.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"
#include "toml++/toml.h"

namespace {

int Serve(cairn::node::ServeConfig cfg) {
  if (absl::Status st = cairn::node::ValidateConfig(&cfg); !st.ok()) return cairn::node::Fail(st);
  cairn::node::LogOptions log;
  log.file = cfg.log_file;
  log.max_bytes = cfg.log_max_bytes;
  log.files = cfg.log_files;
  log.level = cfg.log_level;
  if (absl::Status st = cairn::node::SetUpLogging(log); !st.ok()) return cairn::node::Fail(st);
  if (cfg.trust.empty()) {
    return cairn::node::Fail(absl::InvalidArgumentError(
        "no trust file: pass --trust FILE (made by `cairn trust init`) or set node.trust"));
  }
  if (cfg.data.empty()) cfg.data = cairn::node::DefaultDataDir();
  // Expiry is checked by the repository on the newest root it holds: a node
  // that received newer roots from its peers starts even when the file's
  // root has expired since.
  auto trust = cairn::TrustRootView::Load(cfg.trust, cairn::kIgnoreExpiry);
  if (!trust.ok()) return cairn::node::Fail(trust.status());

  // Block the stop signals before any thread starts, then wait for them here.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGUSR1);  // a scrub pass now (cairn-node scrub --now)
  sigaddset(&sigs, SIGUSR2);  // a backup, gc, import or inventory request
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  cairn::RepositoryOptions ropts;
  ropts.pack.verify_on_read = cfg.verify_reads;
  ropts.pack.min_free_bytes = cfg.min_free_bytes;
  ropts.pack.pack_bytes = uint64_t(cfg.pack_file_mib) << 20;
  ropts.region = cfg.region;
  if (auto s3 = cairn::node::S3OptionsOf(cfg); !s3.ok()) {
    return cairn::node::Fail(s3.status());
  } else if (*s3) {
    ropts.s3_chunks = std::move(*s3);
    spdlog::info("chunks in {} at {}{}", cfg.chunks, ropts.s3_chunks->endpoint,
                 cfg.s3_collector ? "; this frontend collects the bucket's garbage" : "");
  }
  ropts.max_sessions_per_peer = static_cast<size_t>(cfg.max_sessions_per_peer);
  ropts.upload_bytes_per_day = cfg.upload_bytes_per_day;
  for (const auto& [k, v] : cfg.upload_quota_by_key) ropts.upload_quota_by_key[k] = v;
  ropts.capacity.max_bytes = cfg.max_bytes;
  for (const auto& [ns, v] : cfg.namespace_limits) ropts.capacity.namespace_bytes[ns] = v;
  ropts.capacity.pins = cfg.pins;

  // TLS: the node's own certificate serves its port and is presented to the
  // nodes it follows; the CA verifies both directions.
  cairn::node::ServerOptions sopts;
  sopts.max_streams_per_peer = cfg.max_streams_per_peer;
  sopts.stream_idle_seconds = cfg.stream_idle_seconds;
  sopts.call_memory_bytes = uint64_t(cfg.call_memory_mib) << 20;
  sopts.max_streams_per_connection = cfg.max_streams_per_connection;
  sopts.require_client_cert = cfg.tls_require_client_cert;
  if (cfg.tls_cert.empty() != cfg.tls_key.empty()) {
    return cairn::node::Fail(absl::InvalidArgumentError("--tls-cert and --tls-key go together"));
  }
  if (!cfg.tls_ca.empty() && cfg.tls_cert.empty()) {
    return cairn::node::Fail(absl::InvalidArgumentError(
        "--tls-ca needs --tls-cert and --tls-key (mutual TLS between nodes)"));
  }
  if (cfg.tls_require_client_cert && cfg.tls_ca.empty()) {
    return cairn::node::Fail(
        absl::InvalidArgumentError("--tls-require-client-cert needs --tls-ca"));
  }
  cairn::TlsOptions outbound;
  if (!cfg.tls_cert.empty()) {
    auto own = cairn::TlsOptions::Load(cfg.tls_ca.empty() ? cfg.tls_cert : cfg.tls_ca, cfg.tls_cert,
                                       cfg.tls_key);
    if (!own.ok()) return cairn::node::Fail(own.status());
    sopts.tls_cert_pem = own->cert_pem;
    sopts.tls_key_pem = own->key_pem;
    if (!cfg.tls_ca.empty()) {
      sopts.tls_ca_pem = own->ca_pem;
      outbound = *own;
    }
  }
  auto repo = cairn::Repository::Open(cfg.data, std::move(*trust), ropts);
  if (!repo.ok()) return cairn::node::Fail(repo.status());
  // Pull-through from the upstreams: a release a client asks for that this
  // node lacks is fetched through the same verified path as the feed.
  std::vector<cairn::node::ReplicationLoop::UpstreamConfig> ups = cfg.upstream_tables;
  for (const auto& a : cfg.upstreams) ups.push_back({a, {}});
  std::unique_ptr<cairn::node::OnDemand> on_demand;
  std::atomic<cairn::node::ReplicationLoop*> replication_ptr{nullptr};
  if (cfg.on_demand && !ups.empty()) {
    cairn::node::OnDemandConfig oc;
    for (const auto& u : ups) {
      oc.upstreams.push_back(u.address);
      if (u.policy.max_bytes_per_second > 0) {
        oc.max_bytes_per_second[u.address] = u.policy.max_bytes_per_second;
      }
    }
    oc.peers = cfg.peers;
    oc.tls = outbound;
    oc.policy = cfg.on_demand_policy;
    // What a fetch took shows in its upstream's status once the loop runs.
    oc.on_fetched = [&replication_ptr](const std::string& a, const cairn::ReplicationStats& s) {
      if (auto* r = replication_ptr.load()) r->AddFetched(a, s);
    };
    on_demand = std::make_unique<cairn::node::OnDemand>(repo->get(), std::move(oc));
    sopts.on_demand = on_demand.get();
    spdlog::info("pull-through on ({})", cfg.on_demand_policy.ToString());
  }
  cairn::node::ScrubOptions scrub_opts;
  scrub_opts.bytes_per_second = cfg.scrub_bytes_per_second;
  scrub_opts.interval_seconds = int64_t{cfg.scrub_interval_hours} * 3600;
  scrub_opts.repair_retry_seconds = cfg.scrub_repair_retry_seconds;
  if (on_demand) {
    scrub_opts.repair = [od = on_demand.get()](const std::string& n, const std::string& d) {
      return od->Repair(n, d);
    };
  }
  cairn::node::Scrubber scrubber(repo->get(), scrub_opts);
  sopts.scrub = &scrubber;
  cairn::node::GcLoop gc((*repo).get(), cairn::node::GcLoopOptionsOf(cfg));
  sopts.gc = &gc;
  // An eviction frees space at the garbage collection it starts.
  (*repo)->SetOnEvicted([&gc](const std::string& what) {
    spdlog::info("capacity: evicted {}", what);
    gc.RunSoon();
  });
  absl::Cleanup unhook = [&repo] {  // before gc goes (repo may be gone already)
    if (*repo) (*repo)->SetOnEvicted({});
  };
  if (auto n = (*repo)->EnforceCapacity(); !n.ok()) {
    spdlog::warn("capacity: {}", n.status().ToString());
  } else if (*n > 0) {
    spdlog::info("capacity: evicted {} mirrored releases to come under the caps", *n);
  }
  sopts.import_from = cfg.import_from;
  // Set once the gateway serves chunks (plain HTTP, chunks in pack files).
  auto chunks_http_port = std::make_shared<std::atomic<int>>(0);
  sopts.chunks_http_port = chunks_http_port;
  auto server = cairn::node::NodeServer::Start(repo->get(), cfg.listen, sopts);
  if (!server.ok()) return cairn::node::Fail(server.status());
  spdlog::info("data {}; trust root v{} ({})", cfg.data, (*repo)->trust().root().version(),
               (*repo)->trust().digest());
  if (!(*repo)->trust_note().empty()) spdlog::warn("{}", (*repo)->trust_note());
  if (!sopts.tls_cert_pem.empty()) {
    spdlog::info("TLS on; client certificates {}", sopts.tls_ca_pem.empty() ? "not requested"
                                                   : sopts.require_client_cert
                                                       ? "required"
                                                       : "verified when presented");
  }
  std::printf("cairn-node listening on %s\n", (*server)->address().c_str());
  std::unique_ptr<cairn::node::HttpGateway> gateway;
  if (!cfg.http.empty()) {
    cairn::node::HttpOptions hopts;
    hopts.data_dir = cfg.data;
    // With the node's certificate, the HTTP port speaks HTTPS too (no client
    // certificates there: it serves the public, like the Hub).
    hopts.tls_cert_pem = sopts.tls_cert_pem;
    hopts.tls_key_pem = sopts.tls_key_pem;
    hopts.on_demand = on_demand.get();
    hopts.scrub = &scrubber;
    hopts.gc = &gc;
    hopts.store_verifies_reads = cfg.verify_reads;
    hopts.verify_reads = cfg.http_verify_reads;
    hopts.verify_with_crc = cfg.http_verify_reads_with == "crc32c";
    if (!cfg.http_verify_reads && cfg.http_verify_reads_with != "crc32c") {
      spdlog::warn("[http] verify_reads_with = \"{}\" has no effect: [http] verify_reads is false",
                   cfg.http_verify_reads_with);
    }
    hopts.zero_copy = cfg.http_sendfile;
    hopts.max_connections = cfg.http_max_connections;
    hopts.max_connections_per_client = cfg.http_max_connections_per_client;
    hopts.requests_per_second_per_client = cfg.http_requests_per_second_per_client;
    hopts.tree_page_size = cfg.http_tree_page_size;
    hopts.max_read_ahead_bytes = uint64_t(cfg.http_max_read_ahead_mib) << 20;
    auto g = cairn::node::HttpGateway::Start(repo->get(), cfg.http, hopts);
    if (!g.ok()) return cairn::node::Fail(g.status());
    gateway = std::move(*g);
    // Clients then fetch chunks with POST /v1/chunks, which the gateway
    // sends from the pack files with sendfile (docs/protocol.md). Not over
    // TLS (no sendfile there), nor from an object store (no files to send),
    // nor when the gateway listens on another address than the gRPC port
    // (clients reach the node by that one; a port behind a firewall would
    // cost them a connect timeout before they use GetMany).
    auto grpc_at = cairn::ParseNodeAddress(cfg.listen, true);
    auto http_at = cairn::ParseNodeAddress(cfg.http, true);
    const auto wildcard = [](const std::string& h) { return h == "0.0.0.0" || h == "::"; };
    const bool same_host =
        grpc_at.ok() && http_at.ok() && (http_at->host == grpc_at->host || wildcard(http_at->host));
    if (hopts.tls_cert_pem.empty() && cfg.chunks.empty() && same_host) {
      chunks_http_port->store(gateway->port());
    }
    std::printf("cairn-node http on %s%s\n", gateway->address().c_str(),
                hopts.tls_cert_pem.empty() ? "" : " (https)");
  }
  std::fflush(stdout);
  std::unique_ptr<cairn::node::ReplicationLoop> replication;
  if (!ups.empty()) {
    for (const auto& u : ups) {
      spdlog::info("following upstream {} ({})", u.address, u.policy.ToString());
    }
    for (const auto& p : cfg.peers) spdlog::info("peer {}: asked for chunks too", p);
    replication =
        std::make_unique<cairn::node::ReplicationLoop>(repo->get(), ups, 2, cfg.peers, outbound);
    replication_ptr = replication.get();
    (*server)->SetUpstreamStatus([r = replication.get()] { return r->Status(); });
    if (gateway) gateway->SetUpstreamStatus([r = replication.get()] { return r->Status(); });
  }

  // Tags that expire soon are refused by clients once they do: warn at start
  // and once a day, naming them and the command that renews them.
  auto warn_expiring = [&] {
    auto tags = (*repo)->ExpiringTags(cairn::kTagWarningSeconds);
    if (!tags.ok()) {
      spdlog::warn("cannot list expiring tags: {}", tags.status().ToString());
      return;
    }
    for (const auto& t : *tags) {
      spdlog::warn(
          "tag {}:{} (v{}) {} {}; the publisher renews it with: cairn renew {}:{} --key KEY "
          "--node {}",
          t.name(), t.tag(), t.version(),
          t.expires_unix() <= std::time(nullptr) ? "expired" : "expires",
          cairn::UtcDay(t.expires_unix()), t.name(), t.tag(), (*server)->address());
    }
  };
  warn_expiring();
  scrubber.Start();
  gc.Start();
  int sig = 0;
  const timespec day{86400, 0};
  // Backups run one at a time on a thread of their own; a SIGUSR2 while one
  // runs is counted, and the thread looks for requests again before it ends.
  std::thread backup;
  absl::Mutex backup_mu;
  bool backup_running = false;
  int backup_asked = 0;
  cairn::Cancellation backup_cancel;
  while ((sig = sigtimedwait(&sigs, nullptr, &day)) < 0 || sig == SIGUSR1 || sig == SIGUSR2) {
    if (sig == SIGUSR1) {
      spdlog::info("signal {}: scrub pass asked for", sig);
      scrubber.RunNow();
    } else if (sig == SIGUSR2) {
      absl::MutexLock l(&backup_mu);
      ++backup_asked;
      if (!backup_running) {
        if (backup.joinable()) backup.join();  // ended: it cleared backup_running
        backup_running = true;
        backup = std::thread([&, r = repo->get(), data = cfg.data] {
          for (;;) {
            {
              absl::MutexLock l(&backup_mu);
              if (backup_asked == 0 || backup_cancel.cancelled()) {
                backup_running = false;
                return;
              }
              backup_asked = 0;
            }
            cairn::node::AnswerBackupRequests(r, data, &backup_cancel);
            cairn::node::AnswerGcRequests(&gc, data);
            cairn::node::AnswerBundleRequests(r, data, &backup_cancel);
          }
        });
      }
    } else if (errno == EAGAIN) {
      warn_expiring();
    }
    sig = 0;
  }
  spdlog::info("signal {}: stopping", sig);
  chunks_http_port->store(0);  // the gateway drains: new pulls use GetMany
  // The scrub stops first: a repair it asks for goes through on_demand.
  scrubber.Stop();
  gc.Stop();
  // A backup in progress stops (its partial copy is removed; the command
  // waiting for it hears so).
  backup_cancel.Cancel();
  if (backup.joinable()) backup.join();
  // Replication stops first and at once (a transfer or a pacing wait in
  // progress is cancelled; what arrived is kept). The status function is
  // cleared before the loop goes: SetUpstreamStatus waits for NodeInfo calls
  // in flight, so none can reach a destroyed loop.
  if (replication) replication->Stop();
  // No new fetch on demand; those in progress go on through the drain, so a
  // download waiting on one can finish.
  if (on_demand) on_demand->Close();
  (*server)->SetUpstreamStatus({});
  if (gateway) gateway->SetUpstreamStatus({});
  replication_ptr = nullptr;
  replication.reset();
  // Drain: answers in progress (HTTP downloads, gRPC streams) get up to
  // drain_seconds to finish; new ones are refused meanwhile.
  const absl::Time drain_deadline = absl::Now() + absl::Seconds(cfg.drain_seconds);
  // Fetches on demand still in progress go on after both servers drained
  // (a download can end before the fetch it read from commits) until they
  // commit or the deadline: that answers the calls and downloads waiting on
  // them (the gRPC server's shutdown waits for every call).
  absl::Mutex drain_mu;
  int drained = 0;  // of the two servers; guarded by drain_mu
  auto one_drained = [&] {
    absl::MutexLock l(&drain_mu);
    ++drained;
  };
  std::thread fetch_stop([&] {
    if (!on_demand) return;
    {
      absl::MutexLock l(&drain_mu);
      auto both = [&drained] { return drained == 2; };
      drain_mu.AwaitWithDeadline(absl::Condition(&both), drain_deadline);
    }
    if (!on_demand->WaitIdle(drain_deadline)) {
      spdlog::warn("stopping: {} fetches on demand still in progress were cut",
                   on_demand->in_flight());
    }
    on_demand->Stop();
  });
  std::thread http_drain([&] {
    if (gateway) {
      const size_t cut = gateway->Drain(drain_deadline);
      if (cut > 0) spdlog::warn("stopping: {} HTTP answers still in progress were cut", cut);
    }
    one_drained();
  });
  (*server)->Shutdown(cfg.drain_seconds);
  one_drained();
  http_drain.join();
  fetch_stop.join();
  (*server)->Wait();
  server->reset();
  absl::Status st = (*repo)->chunks()->Sync();
  if (!st.ok()) spdlog::error("final sync: {}", st.ToString());
  repo->reset();
  spdlog::info("stopped cleanly");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  cairn::TuneProcess(argv, /*max_arenas=*/4, /*huge_heap=*/true);
  auto logger = spdlog::stderr_color_mt("cairn-node");
  spdlog::set_default_logger(logger);

  CLI::App app{"cairn-node: a Cairn mirror node"};
  app.require_subcommand(1);
  cairn::node::ServeConfig flags;
  std::string config;
  auto* serve = app.add_subcommand("serve", "serve models from a data directory");
  serve->add_option(
      "--config", config,
      "TOML config file ([node] data, listen, http, trust, log_level, log_file, log_max_bytes, "
      "log_files, region, chunks, verify_reads, "
      "upstreams, "
      "peers, tls_cert, tls_key, tls_ca, tls_require_client_cert, max_streams_per_peer, "
      "max_sessions_per_peer, stream_idle_seconds, call_memory_mib, max_streams_per_connection, "
      "upload_bytes_per_day, max_bytes, pin, scrub_bytes_per_second, scrub_interval_hours, "
      "scrub_repair_retry_seconds, min_free_bytes, gc_interval_hours, gc_grace_hours, "
      "gc_compact_below_percent, gc_staged_retention_days, withheld_retention_days, "
      "yanked_retention_days, pack_file_mib; "
      "[http] max_connections, max_connections_per_client, requests_per_second_per_client, "
      "tree_page_size, max_read_ahead_mib, verify_reads, verify_reads_with, sendfile; [on_demand] "
      "enabled, include, "
      "exclude, "
      "max_release_bytes; [[upstream]] address, include, exclude, "
      "max_release_bytes, max_bytes_per_second, min_bytes_per_second, tags, windows, streams; "
      "[namespace_limits] NS = BYTES; [quota] KEYID = "
      "bytes/day)");
  auto* o_data = serve->add_option("--data", flags.data, "data directory");
  auto* o_listen =
      serve->add_option("--listen", flags.listen, "gRPC address HOST:PORT (port 0 picks one)");
  auto* o_http = serve->add_option(
      "--http", flags.http,
      "HTTP gateway address HOST:PORT (plain HTTP downloads: /v1/files, /v1/releases; port 0 "
      "picks one; default: off)");
  auto* o_trust = serve->add_option("--trust", flags.trust, "trust root file");
  auto* o_log = serve->add_option("--log-level", flags.log_level,
                                  "trace|debug|info|warning|error|critical|off (any case)");
  auto* o_log_file = serve->add_option(
      "--log-file", flags.log_file,
      "write the log to this file, rotated at log_max_bytes (default: standard error)");
  auto* o_region = serve->add_option("--region", flags.region, "region label reported to peers");
  auto* o_chunks = serve->add_option(
      "--chunks", flags.chunks,
      "keep chunks in an S3 bucket shared with other frontends: s3://BUCKET[/PREFIX] (endpoint "
      "and credentials: [s3] and CAIRN_S3_*; default: pack files under --data)");
  auto* o_up = serve->add_option("--upstream", flags.upstreams,
                                 "follow this node's feed, HOST:PORT (repeatable)");
  auto* o_peer = serve->add_option(
      "--peer", flags.peers,
      "also ask this node for chunks of replicated releases, HOST:PORT (repeatable)");
  auto* o_cert = serve->add_option("--tls-cert", flags.tls_cert, "TLS certificate (PEM)");
  auto* o_key = serve->add_option("--tls-key", flags.tls_key, "TLS private key (PEM)");
  auto* o_ca = serve->add_option(
      "--tls-ca", flags.tls_ca,
      "CA (PEM) that signs the federation's node certificates: verifies client certificates "
      "and the upstreams' (mutual TLS)");
  auto* o_req = serve->add_flag("--tls-require-client-cert", flags.tls_require_client_cert,
                                "with --tls-ca: refuse clients without a certificate");
  auto* o_streams = serve
                        ->add_option("--max-streams-per-peer", flags.max_streams_per_peer,
                                     "concurrent chunk streams per client address (default 64)")
                        ->check(CLI::Range(1, 100000));
  auto* o_quota = serve->add_option(
      "--upload-quota", flags.upload_bytes_per_day,
      "bytes of new chunks and staged chunk lists per publisher key per UTC day (default "
      "0: unlimited; [quota] in the config sets it per key)");
  bool no_verify_reads = false, verify_reads = false;
  auto* o_nv = serve->add_flag("--no-verify-reads", no_verify_reads,
                               "serve gRPC clients chunks without re-hashing them (the default: "
                               "they verify every chunk, and the scrub finds rot)");
  auto* o_v = serve->add_flag("--verify-reads", verify_reads,
                              "re-hash every chunk read for a gRPC client too (costs CPU)");
  o_v->excludes(o_nv);
  // The offline commands find the data directory and trust root the same
  // way: --config, then --data and --trust over it.
  struct DataOptions {
    std::string config, data, trust;
    CLI::Option *o_data = nullptr, *o_trust = nullptr;
    void Add(CLI::App* sub) {
      sub->add_option("--config", config, "the node's config file (for data and trust)");
      o_data = sub->add_option("--data", data, "data directory");
      o_trust = sub->add_option("--trust", trust, "trust root file (stopped node only)");
    }
    absl::StatusOr<cairn::node::ServeConfig> Load() const {
      cairn::node::ServeConfig c;
      if (!config.empty()) CAIRN_RETURN_IF_ERROR(cairn::node::LoadConfig(config, &c));
      if (*o_data) c.data = data;
      if (*o_trust) c.trust = trust;
      return c;
    }
  };
  DataOptions scrub_opts_cli, backup_opts_cli, gc_opts_cli;
  auto* scrub = app.add_subcommand(
      "scrub",
      "re-hash every stored chunk and check every release is complete: a running node is asked "
      "to (by signal), a stopped one is scrubbed here");
  bool scrub_now = false;
  scrub->add_flag("--now", scrub_now, "start the pass now (required)")->required();
  scrub_opts_cli.Add(scrub);
  std::string check_path;
  auto* check = app.add_subcommand(
      "check-config",
      "report every error in a config file with its line, and check the trust root and TLS "
      "files it names load; exit 1 on any");
  check->add_option("FILE", check_path, "the config file")->required();
  std::string backup_to;
  auto* backup = app.add_subcommand(
      "backup",
      "copy a data directory to a new one a node can start on, consistent while the node serves "
      "(it is asked by signal); a stopped node's is copied here");
  backup->add_option("--to", backup_to, "the new directory")->required();
  backup_opts_cli.Add(backup);
  bool gc_dry = false;
  auto* gc = app.add_subcommand(
      "gc",
      "remove chunks no release needs (past the grace period) and compact pack files: a running "
      "node is asked (by signal) and runs it with its settings; a stopped one is collected here");
  gc->add_flag("--dry-run", gc_dry, "count what would go; remove nothing");
  gc_opts_cli.Add(gc);
  // Offline bundles (docs/operators.md, "Moving models by disk").
  DataOptions export_opts_cli, import_opts_cli, inventory_opts_cli;
  cairn::node::NodeExportArgs export_args;
  auto* exp = app.add_subcommand(
      "export",
      "write releases of a stopped node to a bundle file (a running node: cairn export --node)");
  exp->add_option("REF", export_args.refs, "NAME[:TAG], NAME@VERSION or NAME@sha256:...")
      ->required();
  exp->add_option("--to", export_args.to, "the bundle file")->required();
  exp->add_option("--split", export_args.split,
                  "write volumes FILE.001, FILE.002 ... of at most this size (4G fits FAT32)");
  exp->add_option("--have", export_args.have_file,
                  "the receiver's inventory (cairn-node inventory): what it holds is left out");
  exp->add_option("--base", export_args.base,
                  "a release the receiver holds (NAME@sha256:...): its chunks are left out");
  export_opts_cli.Add(exp);
  std::vector<std::string> import_files;
  auto* imp = app.add_subcommand(
      "import",
      "verify a bundle against this node's trust root and make its releases visible: a running "
      "node is asked (by signal) and reads the files itself; a stopped one imports here");
  imp->add_option("FILE", import_files, "the bundle, or its volumes in order")->required();
  import_opts_cli.Add(imp);
  std::string inventory_to;
  auto* inv = app.add_subcommand(
      "inventory", "write what this node holds, for an exporter's --have (default: stdout)");
  inv->add_option("--to", inventory_to, "the inventory file");
  inventory_opts_cli.Add(inv);
  std::string frontends_config, frontends_chunks, forget_id;
  auto* frontends = app.add_subcommand(
      "s3-frontends",
      "list the frontends registered in an S3 bucket's garbage collection (each must answer a "
      "round before it deletes anything), or forget one stopped for good");
  frontends->add_option("--chunks", frontends_chunks, "the bucket: s3://BUCKET[/PREFIX]")
      ->required();
  frontends->add_option("--config", frontends_config, "a node's config file (for [s3] endpoint)");
  frontends->add_option("--forget", forget_id, "the id of a frontend that will not come back");
  bool forget_force = false;
  frontends->add_flag("--force", forget_force,
                      "forget it although it said it was running within 15 minutes");
  std::string repair_dir;
  auto* repair = app.add_subcommand(
      "repair",
      "rebuild a stopped node's metadata database and chunk index from the files left in its "
      "data directory (after meta/CURRENT or a MANIFEST was lost)");
  repair->add_option("--data", repair_dir, "data directory")->required();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (*repair) {
    absl::Status st = cairn::Repository::Repair(repair_dir);
    if (!st.ok()) return cairn::node::Fail(st);
    std::printf("repaired %s: start the node to check what it holds (cairn status)\n",
                repair_dir.c_str());
    return 0;
  }
  if (*check) return cairn::node::CheckConfig(check_path);
  if (*frontends) {
    return cairn::node::S3FrontendsCmd(frontends_config, frontends_chunks, forget_id, forget_force);
  }
  if (*exp || *imp || *inv) {
    auto c = (*exp ? export_opts_cli : *imp ? import_opts_cli : inventory_opts_cli).Load();
    if (!c.ok()) return cairn::node::Fail(c.status());
    if (*exp) return cairn::node::ExportCmd(*c, export_args);
    if (*imp) return cairn::node::ImportCmd(*c, import_files);
    return cairn::node::InventoryCmd(*c, inventory_to);
  }
  if (*backup || *scrub || *gc) {
    auto c = (*backup ? backup_opts_cli : *gc ? gc_opts_cli : scrub_opts_cli).Load();
    if (!c.ok()) return cairn::node::Fail(c.status());
    if (*gc) return cairn::node::Gc(*c, gc_dry);
    return *backup ? cairn::node::Backup(*c, backup_to) : cairn::node::Scrub(*c);
  }
  cairn::node::ServeConfig cfg;
  if (!config.empty()) {
    absl::Status st = cairn::node::LoadConfig(config, &cfg);
    if (!st.ok()) return cairn::node::Fail(st);
  }
  if (*o_data) cfg.data = flags.data;
  if (*o_listen) cfg.listen = flags.listen;
  if (*o_http) cfg.http = flags.http;
  if (*o_trust) cfg.trust = flags.trust;
  if (*o_log) cfg.log_level = flags.log_level;
  if (*o_log_file) cfg.log_file = flags.log_file;
  if (*o_region) cfg.region = flags.region;
  if (*o_chunks) cfg.chunks = flags.chunks;
  if (*o_up) cfg.upstreams = flags.upstreams;
  if (*o_peer) cfg.peers = flags.peers;
  if (*o_nv) cfg.verify_reads = false;
  if (*o_v) cfg.verify_reads = true;
  if (*o_cert) cfg.tls_cert = flags.tls_cert;
  if (*o_key) cfg.tls_key = flags.tls_key;
  if (*o_ca) cfg.tls_ca = flags.tls_ca;
  if (*o_req) cfg.tls_require_client_cert = true;
  if (*o_streams) cfg.max_streams_per_peer = flags.max_streams_per_peer;
  if (*o_quota) cfg.upload_bytes_per_day = flags.upload_bytes_per_day;
  return Serve(cfg);
}
