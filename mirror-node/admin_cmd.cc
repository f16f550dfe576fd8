#include "admin_cmd.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <functional>

#include "absl/strings/ascii.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cairn/repository.h"
#include "cairn/s3_store.h"
#include "cairn/status.h"
#include "cairn/strings.h"
#include "cairn/transport/channel.h"
#include "gc_loop.h"
#include "scrub.h"
#include "spdlog/spdlog.h"

namespace cairn::node {

// One line per error (a config file's errors come together).
int Fail(const absl::Status& s) {
  for (absl::string_view line : absl::StrSplit(s.message(), '\n')) {
    std::fprintf(stderr, "cairn-node: error: %s\n", std::string(line).c_str());
  }
  return 1;
}

// `cairn-node check-config FILE`: every error in the file (with its line),
// then what the file names (trust root, TLS files) loaded as the node would.
int CheckConfig(const std::string& path) {
  ServeConfig cfg;
  if (absl::Status st = LoadConfig(path, &cfg); !st.ok()) return Fail(st);
  std::vector<std::string> errs;
  if (absl::Status st = ValidateConfig(&cfg); !st.ok()) {
    errs.push_back(std::string(st.message()));
  }
  if (!cfg.trust.empty()) {
    auto trust = cairn::TrustRootView::Load(cfg.trust, cairn::kIgnoreExpiry);
    if (!trust.ok()) errs.push_back(cairn::StrCat("node.trust: ", trust.status().message()));
  }
  if (cfg.tls_cert.empty() != cfg.tls_key.empty()) {
    errs.push_back("node.tls_cert and node.tls_key go together");
  } else if (!cfg.tls_cert.empty()) {
    auto tls = cairn::TlsOptions::Load(cfg.tls_ca.empty() ? cfg.tls_cert : cfg.tls_ca, cfg.tls_cert,
                                       cfg.tls_key);
    if (!tls.ok()) errs.push_back(cairn::StrCat("node TLS files: ", tls.status().message()));
  }
  if (!errs.empty()) {
    for (auto& e : errs) e = cairn::StrCat("config ", path, ": ", e);
    return Fail(absl::InvalidArgumentError(absl::StrJoin(errs, "\n")));
  }
  std::printf("%s: OK (data %s, listen %s, http %s, %zu upstream(s), trust %s)\n", path.c_str(),
              cfg.data.empty() ? DefaultDataDir().c_str() : cfg.data.c_str(), cfg.listen.c_str(),
              cfg.http.empty() ? "off" : cfg.http.c_str(),
              cfg.upstreams.size() + cfg.upstream_tables.size(),
              cfg.trust.empty() ? "not set: pass --trust" : cfg.trust.c_str());
  return 0;
}

// The process holding DIR, when it is a serving cairn-node (its command line
// says so): only such a process is signalled. 0 when none holds DIR.
absl::StatusOr<int> ServingNode(const std::string& data) {
  CAIRN_ASSIGN_OR_RETURN(int pid, Repository::HolderOf(data));
  if (pid == 0) return 0;
  // /proc files report size 0: read until the end.
  std::string cmdline;
  if (FILE* f = std::fopen(StrCat("/proc/", pid, "/cmdline").c_str(), "re")) {
    char buf[4096];
    size_t n;
    while (cmdline.size() < (64 << 10) && (n = std::fread(buf, 1, sizeof(buf), f)) > 0) {
      cmdline.append(buf, n);
    }
    std::fclose(f);
  }
  std::vector<std::string> argv = absl::StrSplit(cmdline, '\0');
  const bool node = !argv.empty() && std::filesystem::path(argv[0]).filename() == "cairn-node" &&
                    std::find(argv.begin(), argv.end(), "serve") != argv.end();
  if (!node) {
    return absl::FailedPreconditionError(
        StrCat(data, " is held by pid ", pid,
               ", which is not a serving cairn-node (another scrub or "
               "backup of it, perhaps): nothing was signalled; try again when it has finished"));
  }
  return pid;
}

// The offline commands hold DIR themselves: a scrub or backup asked for
// meanwhile must not end them (SIGUSR1 and SIGUSR2 would), and DIR must hold
// a node's data (a mistyped path is not a fresh, empty node).
absl::StatusOr<std::unique_ptr<Repository>> OpenOffline(const ServeConfig& cfg, const char* what) {
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGUSR1);
  sigaddset(&s, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &s, nullptr);
  std::error_code ec;
  if (!std::filesystem::exists(cfg.data + "/meta/CURRENT", ec)) {
    return absl::NotFoundError(
        StrCat("no node data in ", cfg.data, " (no meta/CURRENT): is --data right?"));
  }
  if (cfg.trust.empty()) {
    return absl::InvalidArgumentError(StrCat("no node serves ", cfg.data, ", so it is ", what,
                                             " here: pass --trust FILE (or --config)"));
  }
  CAIRN_ASSIGN_OR_RETURN(TrustRootView trust, TrustRootView::Load(cfg.trust, kIgnoreExpiry));
  RepositoryOptions ropts;
  ropts.pack.verify_on_read = cfg.verify_reads;
  ropts.pack.pack_bytes = uint64_t(cfg.pack_file_mib) << 20;
  CAIRN_ASSIGN_OR_RETURN(ropts.s3_chunks, S3OptionsOf(cfg));
  if (!ropts.s3_chunks && std::filesystem::exists(cfg.data + "/s3-index", ec)) {
    return absl::FailedPreconditionError(
        StrCat(cfg.data, " keeps its chunks in an S3 bucket (it has s3-index): pass the node's",
               " --config with chunks = \"s3://...\" and its [s3] table"));
  }
  return Repository::Open(cfg.data, std::move(trust), ropts);
}

absl::StatusOr<std::optional<S3Options>> S3OptionsOf(const ServeConfig& cfg) {
  if (cfg.chunks.empty()) return std::nullopt;
  S3Options s3;
  s3.endpoint = cfg.s3_endpoint;
  s3.region = cfg.s3_region;
  s3.pack_bytes = uint64_t(cfg.s3_pack_mib) << 20;
  s3.parallel_uploads = cfg.s3_parallel_uploads;
  s3.cache_bytes = uint64_t(cfg.s3_cache_mib) << 20;
  s3.collector = cfg.s3_collector;
  s3.log = [](const std::string& line) { spdlog::warn("{}", line); };
  CAIRN_RETURN_IF_ERROR(ParseS3Url(cfg.chunks, &s3));
  return S3OptionsFromEnvironment(s3);
}

// `cairn-node scrub --now`: a running node is asked by signal (its pass is
// paced at its cap and repairs from its upstreams); a stopped one is scrubbed
// here, unpaced. Exit 0: nothing damaged (or the node was asked); 2: damage
// found offline.
int Scrub(ServeConfig cfg) {
  if (cfg.data.empty()) cfg.data = DefaultDataDir();
  auto holder = ServingNode(cfg.data);
  if (!holder.ok()) return Fail(holder.status());
  if (*holder > 0) {
    if (::kill(*holder, SIGUSR1) != 0) {
      return Fail(ErrnoStatus(
          errno, StrCat("cannot signal cairn-node (pid ", *holder, ") serving ", cfg.data)));
    }
    std::printf(
        "asked cairn-node (pid %d) serving %s for a scrub pass now; follow it with `cairn "
        "status` or the cairn_scrub_* metrics\n",
        *holder, cfg.data.c_str());
    return 0;
  }
  auto repo = OpenOffline(cfg, "scrubbed");
  if (!repo.ok()) return Fail(repo.status());
  ScrubOptions so;
  so.bytes_per_second = 0;  // unpaced: nothing else uses the disk
  Scrubber scrubber(repo->get(), so);
  const ScrubReport r = scrubber.RunPass(/*paced=*/false);
  const cairn::v1::ScrubStatus s = scrubber.Status();
  if (!r.complete) return Fail(absl::InternalError("scrub stopped: " + s.last_error()));
  std::printf(
      "scrubbed %s: %llu chunks (%llu bytes) re-hashed, %llu bad (dropped); %llu "
      "releases lack %llu chunks\n",
      cfg.data.c_str(), static_cast<unsigned long long>(r.chunks_checked),
      static_cast<unsigned long long>(r.bytes_checked),
      static_cast<unsigned long long>(r.chunks_bad),
      static_cast<unsigned long long>(r.releases_damaged),
      static_cast<unsigned long long>(r.chunks_missing));
  if (r.releases_damaged == 0) return 0;
  std::fprintf(stderr,
               "cairn-node: start the node with an upstream that holds them: it fetches what "
               "they lack at once; or publish them again\n");
  return 2;
}

// Requests a running node answers on SIGUSR2, and their answers: one file
// each per request, named by its nonce, in the data directory (only those
// who can write there can ask). "<kind>.request.NONCE" -> "<kind>.result.NONCE".
namespace {

std::string RequestPrefix(std::string_view kind) { return StrCat(kind, ".request."); }
std::string ResultPrefix(std::string_view kind) { return StrCat(kind, ".result."); }

}  // namespace

absl::StatusOr<std::string> AskServingNode(const std::string& data, int pid, std::string_view kind,
                                           const std::string& body) {
  char nonce[33];
  std::snprintf(
      nonce, sizeof(nonce), "%08x%08x%016llx", static_cast<unsigned>(::getpid()),
      static_cast<unsigned>(::time(nullptr)),
      static_cast<unsigned long long>(std::chrono::steady_clock::now().time_since_epoch().count()));
  const std::string req = StrCat(data, "/", RequestPrefix(kind), nonce);
  const std::string result = StrCat(data, "/", ResultPrefix(kind), nonce);
  // Readable by the node's user, which may not be ours (systemd's
  // DynamicUser, a container's): it names only paths, nothing secret.
  CAIRN_RETURN_IF_ERROR(WriteFileAtomic(req, body, 0644));
  if (::kill(pid, SIGUSR2) != 0) {
    ::unlink(req.c_str());
    return ErrnoStatus(errno, StrCat("cannot signal cairn-node (pid ", pid, ")"));
  }
  for (;;) {
    auto answer = ReadFileLimited(result, kMaxAnswerBytes);
    if (answer.ok()) {
      ::unlink(result.c_str());
      std::string what(absl::StripTrailingAsciiWhitespace(*answer));
      if (what.rfind("ok ", 0) == 0) return what.substr(3);
      return absl::InternalError(what);
    }
    if (::kill(pid, 0) != 0) {
      ::unlink(req.c_str());
      return absl::UnavailableError(
          StrCat("cairn-node (pid ", pid, ") stopped before it answered"));
    }
    ::usleep(100 * 1000);  // the node answers in a file; look again
  }
}

size_t AnswerRequests(const std::string& data, std::string_view kind,
                      const std::function<std::string(const std::vector<std::string>&)>& answer) {
  const std::string prefix = RequestPrefix(kind);
  std::vector<std::string> nonces;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(data, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    std::string nonce = name.substr(prefix.size());
    // Not a temporary file of a request being written, nor anything odd.
    if (nonce.empty() || nonce.size() > 64 ||
        nonce.find_first_not_of("0123456789abcdef") != std::string::npos) {
      continue;
    }
    nonces.push_back(std::move(nonce));
  }
  std::sort(nonces.begin(), nonces.end());
  for (const auto& nonce : nonces) {
    const std::string req = StrCat(data, "/", prefix, nonce);
    auto text = ReadFileLimited(req, kMaxRequestFileBytes);
    ::unlink(req.c_str());
    std::vector<std::string> lines;
    if (text.ok()) lines = absl::StrSplit(*text, '\n');
    if (lines.empty()) lines.emplace_back();
    const std::string said =
        text.ok() ? answer(lines)
                  : StrCat("the node cannot read the request file (", text.status().message(),
                           "): it must be readable by the node's user");
    absl::Status st =
        WriteFileAtomic(StrCat(data, "/", ResultPrefix(kind), nonce), said + "\n", 0600);
    if (!st.ok()) spdlog::error("{} answer: {}", kind, st.ToString());
  }
  return nonces.size();
}

int Backup(ServeConfig cfg, const std::string& dest) {
  if (cfg.data.empty()) cfg.data = DefaultDataDir();
  if (dest.empty() || std::any_of(dest.begin(), dest.end(),
                                  [](unsigned char c) { return c < 0x20 || c == 0x7f; })) {
    return Fail(absl::InvalidArgumentError("--to must be a path without control characters"));
  }
  std::error_code ec;
  const std::string target = std::filesystem::absolute(dest, ec).lexically_normal().string();
  if (ec) return Fail(ErrnoStatus(ec.value(), "cannot resolve " + dest));
  auto holder = ServingNode(cfg.data);
  if (!holder.ok()) return Fail(holder.status());
  uint64_t bytes = 0;
  if (*holder > 0) {
    // A running node copies itself.
    std::fprintf(stderr, "cairn-node (pid %d) is copying %s to %s\n", *holder, cfg.data.c_str(),
                 target.c_str());
    auto answer = AskServingNode(cfg.data, *holder, "backup", StrCat(target, "\n"));
    if (!answer.ok()) return Fail(answer.status());
    bytes = std::strtoull(answer->c_str(), nullptr, 10);
  } else {
    auto repo = OpenOffline(cfg, "copied");
    if (!repo.ok()) return Fail(repo.status());
    auto copied = (*repo)->Backup(target);
    if (!copied.ok()) return Fail(copied.status());
    bytes = *copied;
  }
  std::printf("backed up %s to %s (%llu bytes); start a node on it with --data %s\n",
              cfg.data.c_str(), target.c_str(), static_cast<unsigned long long>(bytes),
              target.c_str());
  return 0;
}

size_t AnswerBackupRequests(Repository* repo, const std::string& data, Cancellation* cancel) {
  return AnswerRequests(data, "backup", [&](const std::vector<std::string>& lines) {
    const std::string& dest = lines[0];
    if (dest.empty() || dest[0] != '/') return std::string("not an absolute path");
    spdlog::info("backup to {} started", dest);
    auto bytes = repo->Backup(dest, cancel);
    if (!bytes.ok()) {
      spdlog::error("backup to {}: {}", dest, bytes.status().ToString());
      return StrCat("backup to ", dest, " failed: ", bytes.status().message());
    }
    spdlog::info("backup to {} done: {} bytes", dest, *bytes);
    return StrCat("ok ", *bytes);
  });
}

GcLoopOptions GcLoopOptionsOf(const ServeConfig& cfg) {
  GcLoopOptions o;
  o.interval_seconds = int64_t{cfg.gc_interval_hours} * 3600;
  o.answer_seconds = cfg.chunks.empty() ? 0 : cfg.s3_answer_seconds;
  o.gc.grace_seconds = int64_t{cfg.gc_grace_hours} * 3600;
  o.gc.compact_below = cfg.gc_compact_below_percent / 100.0;
  o.gc.staged_retention_seconds = int64_t{cfg.gc_staged_retention_days} * 86400;
  o.gc.withheld_retention_seconds = int64_t{cfg.withheld_retention_days} * 86400;
  o.gc.yanked_retention_seconds = int64_t{cfg.yanked_retention_days} * 86400;
  return o;
}

size_t AnswerGcRequests(GcLoop* gc, const std::string& data) {
  return AnswerRequests(data, "gc", [&](const std::vector<std::string>& lines) {
    const bool dry = lines[0] == "dry-run";
    auto r = gc->RunPass(dry);
    if (!r.ok()) return StrCat("garbage collection failed: ", r.status().message());
    if (!r->complete) return std::string("garbage collection stopped: the node is stopping");
    return StrCat("ok ", DescribeGc(*r, dry));
  });
}

// `cairn-node gc [--dry-run]`: a running node is asked (by signal) and runs
// the pass with its own settings; a stopped one is collected here.
int Gc(ServeConfig cfg, bool dry_run) {
  if (cfg.data.empty()) cfg.data = DefaultDataDir();
  auto holder = ServingNode(cfg.data);
  if (!holder.ok()) return Fail(holder.status());
  std::string said;
  if (*holder > 0) {
    auto answer = AskServingNode(cfg.data, *holder, "gc", dry_run ? "dry-run\n" : "run\n");
    if (!answer.ok()) return Fail(answer.status());
    said = *answer;
  } else {
    auto repo = OpenOffline(cfg, "collected");
    if (!repo.ok()) return Fail(repo.status());
    GcOptions o = GcLoopOptionsOf(cfg).gc;
    o.dry_run = dry_run;
    // Over a shared bucket a stopped frontend answers the open round too.
    if (absl::Status st = (*repo)->AnswerCollection(); !st.ok()) return Fail(st);
    auto r = (*repo)->CollectGarbage(o);
    if (!r.ok()) return Fail(r.status());
    said = DescribeGc(*r, dry_run);
  }
  std::printf("%s: %s\n", cfg.data.c_str(), said.c_str());
  return 0;
}

int S3FrontendsCmd(const std::string& config, const std::string& chunks, const std::string& forget,
                   bool force) {
  ServeConfig cfg;
  if (!config.empty()) {
    if (absl::Status st = LoadConfig(config, &cfg); !st.ok()) return Fail(st);
  }
  S3Options o;
  o.endpoint = cfg.s3_endpoint;
  o.region = cfg.s3_region;
  if (absl::Status st = ParseS3Url(chunks, &o); !st.ok()) return Fail(st);
  o = S3OptionsFromEnvironment(o);
  if (o.endpoint.empty() || o.access_key.empty() || o.secret_key.empty()) {
    return Fail(absl::InvalidArgumentError(
        "an S3 endpoint and credentials are needed: [s3] endpoint in --config or "
        "CAIRN_S3_ENDPOINT, and CAIRN_S3_ACCESS_KEY, CAIRN_S3_SECRET_KEY"));
  }
  if (!forget.empty()) {
    if (absl::Status st = ForgetS3Frontend(o, forget, force); !st.ok()) return Fail(st);
    std::printf("forgot frontend %s: collection rounds no longer wait for it\n", forget.c_str());
    return 0;
  }
  auto list = ListS3Frontends(o);
  if (!list.ok()) return Fail(list.status());
  for (const std::string& line : *list) std::printf("%s\n", line.c_str());
  return 0;
}

}  // namespace cairn::node
