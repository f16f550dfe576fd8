// Shared test support: temp dirs, status matchers, trust fixtures, generated
// model-shaped data, and subprocess control for CLI tests.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cairn/crypto.h"
#include "cairn/trust.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cairn::testing {

#define CAIRN_TEST_CONCAT_(a, b) a##b
#define CAIRN_TEST_CONCAT(a, b) CAIRN_TEST_CONCAT_(a, b)
#define ASSERT_OK(expr)                                                   \
  do {                                                                    \
    auto cairn_s_ = (expr);                                               \
    ASSERT_TRUE(cairn_s_.ok()) << ::cairn::testing::StatusText(cairn_s_); \
  } while (0)
#define EXPECT_OK(expr)                                                   \
  do {                                                                    \
    auto cairn_s_ = (expr);                                               \
    EXPECT_TRUE(cairn_s_.ok()) << ::cairn::testing::StatusText(cairn_s_); \
  } while (0)
#define ASSERT_OK_AND_ASSIGN(lhs, expr) \
  ASSERT_OK_AND_ASSIGN_IMPL_(CAIRN_TEST_CONCAT(cairn_or_, __LINE__), lhs, expr)
#define ASSERT_OK_AND_ASSIGN_IMPL_(tmp, lhs, expr)                     \
  auto tmp = (expr);                                                   \
  ASSERT_TRUE(tmp.ok()) << ::cairn::testing::StatusText(tmp.status()); \
  lhs = std::move(tmp).value()

inline std::string StatusText(const absl::Status& s) { return std::string(s.ToString()); }
template <typename T>
std::string StatusText(const absl::StatusOr<T>& s) {
  return std::string(s.status().ToString());
}

// Matches an absl::Status or StatusOr whose code is `code`.
MATCHER_P(StatusIs, code, "") {
  absl::Status s;
  if constexpr (std::is_same_v<std::decay_t<arg_type>, absl::Status>) {
    s = arg;
  } else {
    s = arg.status();
  }
  *result_listener << "status is " << s.ToString();
  return s.code() == code;
}

// A fresh directory under $TMPDIR, removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& rel) const { return path_ + "/" + rel; }

 private:
  std::string path_;
};

// A new empty folder, removed when the test process exits.
std::string FreshDir();

void WriteFile(const std::string& path, const std::string& data);
std::string ReadFile(const std::string& path);
std::string RandomBytes(size_t n, uint64_t seed);

// A root key, a publisher key delegated for `ns`, and the signed trust root.
struct TrustFixture {
  std::unique_ptr<SigningKey> root;
  std::unique_ptr<SigningKey> publisher;
  std::string envelope;  // trust file bytes
  TrustRootView view;
  static TrustFixture Make(const std::string& ns = "acme");
  // Writes root.key, publisher.key(.pub) and trust.root into `dir`.
  void Save(const std::string& dir) const;
};

// A safetensors-shaped file: 8-byte header length, JSON header, then the
// tensors' bytes (pseudo-random, from `seed`).
std::string MakeSafetensors(const std::vector<size_t>& tensor_bytes, uint64_t seed);
// Rewrites `fraction` of the tensors (whole tensors, in place) with new bytes.
// Returns how many bytes changed.
uint64_t MutateTensors(std::string* file, double fraction, uint64_t seed);

// ---- subprocesses (CLI tests) ----
struct RunResult {
  int exit_code = -1;  // 128+signal when killed
  std::string out, err;
};
// Runs argv to completion with extra environment `env` (KEY=VALUE).
RunResult Run(const std::vector<std::string>& argv, const std::vector<std::string>& env = {});

// A child process with its stdout read until a line appears.
class Child {
 public:
  // Starts argv; returns once a stdout line contains `ready` (or fails the
  // test if it exits or 20 s pass). The matched line goes to *line.
  static std::unique_ptr<Child> Start(const std::vector<std::string>& argv,
                                      const std::string& ready, std::string* line,
                                      const std::vector<std::string>& env = {});
  ~Child();
  pid_t pid() const { return pid_; }
  void Kill(int sig);
  // Waits for exit, at most `timeout_seconds`; returns the exit code
  // (128+signal when killed). Past the deadline the child is killed, the test
  // fails and -1 is returned: no test waits for ever.
  int Wait(double timeout_seconds = 120);
  std::string stderr_text() const;

 private:
  pid_t pid_ = -1;
  int out_fd_ = -1;
  std::string err_path_;
  bool reaped_ = false;
  int code_ = -1;
};

// Waits until `cond` holds, checking it every few milliseconds, at most
// `timeout`. Returns whether it held. For conditions that another process or
// a real network makes true, which no in-process signal can report.
bool WaitUntil(const std::function<bool()>& cond, absl::Duration timeout = absl::Seconds(30));

// This process's resident memory, bytes (/proc/self/statm).
size_t ResidentBytes();
// Peak resident bytes since the last ResetPeakResident() (VmHWM).
size_t PeakResidentBytes();
void ResetPeakResident();

// "127.0.0.1:PORT" of a port that was just bound and closed: nothing
// listens there, so a connection is refused at once.
std::string ClosedPortAddress();

// Starts cairn-node on 127.0.0.1:0; fills *address.
std::unique_ptr<Child> StartNode(const std::string& data, const std::string& trust,
                                 std::string* address);

std::string CairnBin();      // path of the built `cairn`
std::string CairnNodeBin();  // path of the built `cairn-node`

}  // namespace cairn::testing
