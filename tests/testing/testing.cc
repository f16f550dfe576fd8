#include "testing.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "cairn/objects.h"
#include "cairn/repository.h"
#include "nlohmann/json.hpp"

namespace cairn::testing {

namespace {
// Each test gets its own client state (rollback records), so tests that
// publish "acme/m" version 1 with fresh keys never see each other's, and
// nothing is written to the real ~/.local/state.
class IsolateClientState : public ::testing::EmptyTestEventListener {
  void OnTestStart(const ::testing::TestInfo&) override {
    dir_ = std::make_unique<TempDir>();
    ::setenv("XDG_STATE_HOME", dir_->path().c_str(), 1);
  }
  void OnTestEnd(const ::testing::TestInfo&) override { dir_.reset(); }
  std::unique_ptr<TempDir> dir_;
};
const bool kIsolated = [] {
  ::testing::UnitTest::GetInstance()->listeners().Append(new IsolateClientState);
  return true;
}();
}  // namespace

TempDir::TempDir() {
  const char* t = std::getenv("TMPDIR");
  std::string tmpl = std::string(t && *t ? t : "/tmp") + "/cairn-test-XXXXXX";
  char* p = ::mkdtemp(tmpl.data());
  if (p == nullptr) std::abort();
  path_ = p;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

void WriteFile(const std::string& path, const std::string& data) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(data.data(), data.size());
  if (!f) ADD_FAILURE() << "cannot write " << path;
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string RandomBytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string out(n, '\0');
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v = rng();
    std::memcpy(out.data() + i, &v, 8);
  }
  for (; i < n; ++i) out[i] = static_cast<char>(rng());
  return out;
}

TrustFixture TrustFixture::Make(const std::string& ns) {
  TrustFixture f;
  f.root = std::move(SigningKey::Generate()).value();
  f.publisher = std::move(SigningKey::Generate()).value();
  cairn::v1::TrustRoot r;
  r.set_version(1);
  r.set_expires_unix(SystemNowUnix() + 86400 * 30);
  AddKey(&r, *f.root);
  AddKey(&r, *f.publisher);
  r.add_root_key_ids(f.root->key_id());
  r.set_root_threshold(1);
  auto* d = r.add_delegations();
  d->set_namespace_(ns);
  d->add_key_ids(f.publisher->key_id());
  d->set_threshold(1);
  f.envelope = std::move(SignTrustRoot(r, {f.root.get()})).value();
  f.view = std::move(TrustRootView::FromEnvelopeBytes(f.envelope, SystemNowUnix())).value();
  return f;
}

void TrustFixture::Save(const std::string& dir) const {
  std::filesystem::create_directories(dir);
  EXPECT_TRUE(root->Save(dir + "/root.key").ok());
  EXPECT_TRUE(publisher->Save(dir + "/publisher.key").ok());
  WriteFile(dir + "/trust.root", envelope);
}

std::string MakeSafetensors(const std::vector<size_t>& tensor_bytes, uint64_t seed) {
  nlohmann::ordered_json h;
  h["__metadata__"] = {{"format", "pt"}};
  size_t off = 0;
  for (size_t i = 0; i < tensor_bytes.size(); ++i) {
    h["layer." + std::to_string(i) + ".weight"] = {{"dtype", "F16"},
                                                   {"shape", {tensor_bytes[i] / 2}},
                                                   {"data_offsets", {off, off + tensor_bytes[i]}}};
    off += tensor_bytes[i];
  }
  std::string header = h.dump();
  while (header.size() % 8) header.push_back(' ');
  uint64_t n = header.size();
  std::string out(reinterpret_cast<const char*>(&n), 8);
  out += header;
  out += RandomBytes(off, seed);
  return out;
}

uint64_t MutateTensors(std::string* file, double fraction, uint64_t seed) {
  uint64_t n;
  std::memcpy(&n, file->data(), 8);
  auto h = nlohmann::json::parse(file->substr(8, n));
  std::vector<std::pair<uint64_t, uint64_t>> tensors;
  for (auto it = h.begin(); it != h.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    tensors.emplace_back(it.value()["data_offsets"][0], it.value()["data_offsets"][1]);
  }
  std::sort(tensors.begin(), tensors.end());
  std::mt19937_64 rng(seed);
  std::shuffle(tensors.begin(), tensors.end(), rng);
  uint64_t total = 0, changed = 0;
  for (auto& t : tensors) total += t.second - t.first;
  for (auto& t : tensors) {
    if (changed >= fraction * total) break;
    std::string fresh = RandomBytes(t.second - t.first, rng());
    std::memcpy(file->data() + 8 + n + t.first, fresh.data(), fresh.size());
    changed += fresh.size();
  }
  return changed;
}

namespace {

std::vector<char*> CStrings(const std::vector<std::string>& v) {
  std::vector<char*> out;
  for (const auto& s : v) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

int DecodeWait(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

pid_t Spawn(const std::vector<std::string>& argv, const std::vector<std::string>& env, int out_fd,
            int err_fd) {
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out_fd, 1);
    ::dup2(err_fd, 2);
    int devnull = ::open("/dev/null", O_RDONLY);
    ::dup2(devnull, 0);
    for (const auto& e : env) ::putenv(const_cast<char*>(e.c_str()));
    auto args = CStrings(argv);
    ::execv(args[0], args.data());
    _exit(127);
  }
  return pid;
}

}  // namespace

RunResult Run(const std::vector<std::string>& argv, const std::vector<std::string>& env) {
  TempDir tmp;
  int out = ::open((tmp / "out").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  int err = ::open((tmp / "err").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = Spawn(argv, env, out, err);
  ::close(out);
  ::close(err);
  int status = 0;
  ::waitpid(pid, &status, 0);
  RunResult r;
  r.exit_code = DecodeWait(status);
  r.out = ReadFile(tmp / "out");
  r.err = ReadFile(tmp / "err");
  return r;
}

std::unique_ptr<Child> Child::Start(const std::vector<std::string>& argv, const std::string& ready,
                                    std::string* line, const std::vector<std::string>& env) {
  auto c = std::unique_ptr<Child>(new Child());
  int p[2];
  if (::pipe(p) != 0) return nullptr;
  char tmpl[] = "/tmp/cairn-child-err-XXXXXX";
  int err = ::mkstemp(tmpl);
  c->err_path_ = tmpl;
  c->pid_ = Spawn(argv, env, p[1], err);
  ::close(p[1]);
  ::close(err);
  c->out_fd_ = p[0];
  std::string buf;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd pfd{c->out_fd_, POLLIN, 0};
    if (::poll(&pfd, 1, 100) > 0) {
      char tmp[4096];
      ssize_t n = ::read(c->out_fd_, tmp, sizeof(tmp));
      if (n <= 0) break;
      buf.append(tmp, n);
      size_t pos;
      while ((pos = buf.find('\n')) != std::string::npos) {
        std::string l = buf.substr(0, pos);
        buf.erase(0, pos + 1);
        if (l.find(ready) != std::string::npos) {
          if (line) *line = l;
          return c;
        }
      }
    }
  }
  ADD_FAILURE() << "child " << argv[0] << " did not print '" << ready
                << "'; stderr: " << c->stderr_text();
  return nullptr;
}

Child::~Child() {
  if (!reaped_ && pid_ > 0) {
    ::kill(pid_, SIGKILL);
    Wait();
  }
  if (out_fd_ >= 0) ::close(out_fd_);
  if (!err_path_.empty()) ::unlink(err_path_.c_str());
}

void Child::Kill(int sig) {
  if (!reaped_) ::kill(pid_, sig);
}

int Child::Wait(double timeout_seconds) {
  if (reaped_) return code_;
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                            std::chrono::duration<double>(timeout_seconds));
  int status = 0;
  // The child's exit wakes the wait (a pidfd is readable once it exited).
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
  for (;;) {
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) break;
    if (r < 0 && errno != EINTR) {
      ADD_FAILURE() << "waitpid: " << std::strerror(errno);
      reaped_ = true;
      return code_ = -1;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      ADD_FAILURE() << "child " << pid_ << " still running after " << timeout_seconds
                    << " s; killed";
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
      if (pidfd >= 0) ::close(pidfd);
      reaped_ = true;
      return code_ = -1;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (pidfd >= 0) {
      pollfd p{pidfd, POLLIN, 0};
      ::poll(&p, 1, static_cast<int>(std::max<int64_t>(1, left.count())));
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));  // no pidfd: a bounded poll
    }
  }
  if (pidfd >= 0) ::close(pidfd);
  reaped_ = true;
  code_ = DecodeWait(status);
  return code_;
}

std::string ClosedPortAddress() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ADD_FAILURE() << "cannot bind a loopback port: " << std::strerror(errno);
  }
  if (fd >= 0) ::close(fd);
  return "127.0.0.1:" + std::to_string(ntohs(a.sin_port));
}

size_t ResidentBytes() {
  std::ifstream statm("/proc/self/statm");
  size_t pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * static_cast<size_t>(::sysconf(_SC_PAGESIZE));
}

size_t PeakResidentBytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6)) << 10;  // kB
  }
  return 0;
}

void ResetPeakResident() {
  std::ofstream("/proc/self/clear_refs") << "5";  // resets VmHWM to the current RSS
}

std::string FreshDir() {
  static TempDir root;
  static std::atomic<int> next{0};
  const std::string dir = root / ("d" + std::to_string(next++));
  std::filesystem::create_directories(dir);
  return dir;
}

bool WaitUntil(const std::function<bool()>& cond, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    if (cond()) return true;
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
}

std::string Child::stderr_text() const { return ReadFile(err_path_); }

std::unique_ptr<Child> StartNode(const std::string& data, const std::string& trust,
                                 std::string* address) {
  std::string line;
  auto c = Child::Start(
      {CairnNodeBin(), "serve", "--data", data, "--listen", "127.0.0.1:0", "--trust", trust},
      "listening on", &line);
  if (c) *address = line.substr(line.rfind(' ') + 1);
  return c;
}

std::string CairnBin() { return CAIRN_BIN_DIR "/client/cairn"; }
std::string CairnNodeBin() { return CAIRN_BIN_DIR "/mirror-node/cairn-node"; }

}  // namespace cairn::testing
