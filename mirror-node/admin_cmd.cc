#include "admin_cmd.h"

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cairn/repository.h"
#include "cairn/status.h"
#include "cairn/strings.h"
#include "cairn/transport/channel.h"
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

// `cairn-node scrub --now`: a running node is asked by signal (its pass is
// paced at its cap and repairs from its upstreams); a stopped one is scrubbed
// here, unpaced. Exit 0: nothing damaged (or the node was asked); 2: damage
// found offline.
int Scrub(ServeConfig cfg) {
  if (cfg.data.empty()) cfg.data = DefaultDataDir();
  auto holder = cairn::Repository::HolderOf(cfg.data);
  if (!holder.ok()) return Fail(holder.status());
  if (*holder > 0) {
    if (::kill(*holder, SIGUSR1) != 0) {
      return Fail(cairn::ErrnoStatus(
          errno, cairn::StrCat("cannot signal cairn-node (pid ", *holder, ") serving ", cfg.data)));
    }
    std::printf(
        "asked cairn-node (pid %d) serving %s for a scrub pass now; follow it with `cairn "
        "status` or the cairn_scrub_* metrics\n",
        *holder, cfg.data.c_str());
    return 0;
  }
  if (cfg.trust.empty()) {
    return Fail(
        absl::InvalidArgumentError("no node serves " + cfg.data +
                                   ", so it is scrubbed here: pass --trust FILE (or --config)"));
  }
  auto trust = cairn::TrustRootView::Load(cfg.trust, cairn::kIgnoreExpiry);
  if (!trust.ok()) return Fail(trust.status());
  cairn::RepositoryOptions ropts;
  ropts.pack.verify_on_read = cfg.verify_reads;
  auto repo = cairn::Repository::Open(cfg.data, std::move(*trust), ropts);
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

// The request a running node answers on SIGUSR2 and the answer it leaves,
// both in its data directory (only those who can write there can ask).
std::string BackupRequestPath(const std::string& data) { return data + "/backup.request"; }
std::string BackupResultPath(const std::string& data) { return data + "/backup.result"; }

int Backup(ServeConfig cfg, const std::string& dest) {
  if (cfg.data.empty()) cfg.data = DefaultDataDir();
  std::error_code ec;
  const std::string target = std::filesystem::absolute(dest, ec).lexically_normal().string();
  if (ec) return Fail(ErrnoStatus(ec.value(), "cannot resolve " + dest));
  const std::string data = std::filesystem::absolute(cfg.data, ec).lexically_normal().string();
  if (target == data || target.rfind(data + "/", 0) == 0) {
    return Fail(
        absl::InvalidArgumentError("the backup must go outside the data directory " + data));
  }
  auto holder = Repository::HolderOf(cfg.data);
  if (!holder.ok()) return Fail(holder.status());
  if (*holder > 0) {
    // A running node copies itself: write the request, signal, wait for the
    // answer that names it.
    char nonce[17];
    std::snprintf(nonce, sizeof(nonce), "%08x%08x", static_cast<unsigned>(::getpid()),
                  static_cast<unsigned>(::time(nullptr)));
    const std::string req = BackupRequestPath(cfg.data);
    absl::Status st = WriteFileAtomic(req, StrCat(nonce, "\n", target, "\n"));
    if (!st.ok()) return Fail(st);
    if (::kill(*holder, SIGUSR2) != 0) {
      return Fail(ErrnoStatus(errno, StrCat("cannot signal cairn-node (pid ", *holder, ")")));
    }
    std::fprintf(stderr, "cairn-node (pid %d) is copying %s to %s\n", *holder, cfg.data.c_str(),
                 target.c_str());
    for (;;) {
      auto answer = ReadFileLimited(BackupResultPath(cfg.data), 64 << 10);
      if (answer.ok()) {
        std::vector<std::string> lines = absl::StrSplit(*answer, absl::MaxSplits('\n', 1));
        if (lines.size() == 2 && lines[0] == nonce) {
          std::string what(absl::StripTrailingAsciiWhitespace(lines[1]));
          if (what.rfind("ok ", 0) == 0) {
            std::printf("backed up %s to %s (%s bytes); start a node on it with --data %s\n",
                        cfg.data.c_str(), target.c_str(), what.substr(3).c_str(), target.c_str());
            return 0;
          }
          return Fail(absl::InternalError(what));
        }
      }
      if (::kill(*holder, 0) != 0) {
        return Fail(absl::UnavailableError(
            StrCat("cairn-node (pid ", *holder, ") stopped before it finished the backup")));
      }
      ::usleep(100 * 1000);  // the node answers in a file; look again
    }
  }
  if (cfg.trust.empty()) {
    return Fail(absl::InvalidArgumentError(
        "no node serves " + cfg.data + ", so it is copied here: pass --trust FILE (or --config)"));
  }
  auto trust = TrustRootView::Load(cfg.trust, kIgnoreExpiry);
  if (!trust.ok()) return Fail(trust.status());
  auto repo = Repository::Open(cfg.data, std::move(*trust));
  if (!repo.ok()) return Fail(repo.status());
  auto bytes = (*repo)->Backup(target);
  if (!bytes.ok()) return Fail(bytes.status());
  std::printf("backed up %s to %s (%llu bytes); start a node on it with --data %s\n",
              cfg.data.c_str(), target.c_str(), static_cast<unsigned long long>(*bytes),
              target.c_str());
  return 0;
}

void AnswerBackupRequest(Repository* repo, const std::string& data) {
  auto req = ReadFileLimited(BackupRequestPath(data), 64 << 10);
  if (!req.ok()) {
    spdlog::warn("backup asked for, but {}: {}", BackupRequestPath(data), req.status().ToString());
    return;
  }
  std::vector<std::string> lines = absl::StrSplit(*req, '\n');
  if (lines.size() < 2 || lines[0].empty() || lines[1].empty() || lines[1][0] != '/') {
    spdlog::warn("backup asked for, but {} is not NONCE\\nABSOLUTE-PATH", BackupRequestPath(data));
    return;
  }
  spdlog::info("backup to {} started", lines[1]);
  auto bytes = repo->Backup(lines[1]);
  std::string answer;
  if (bytes.ok()) {
    spdlog::info("backup to {} done: {} bytes", lines[1], *bytes);
    answer = StrCat(lines[0], "\nok ", *bytes, "\n");
  } else {
    spdlog::error("backup to {}: {}", lines[1], bytes.status().ToString());
    answer = StrCat(lines[0], "\nerror backup to ", lines[1], ": ", bytes.status().message(), "\n");
  }
  absl::Status st = WriteFileAtomic(BackupResultPath(data), answer);
  if (!st.ok()) spdlog::error("backup answer: {}", st.ToString());
}

}  // namespace cairn::node
