// The few S3 calls the chunk store makes, over libcurl with AWS SigV4
// signing, connection reuse and bounded retries. Never logs credentials.
#pragma once

#include <curl/curl.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "cairn/s3_store.h"

namespace cairn::s3 {

class Client {
 public:
  explicit Client(S3Options o);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // PUT of the bucket; OK when it exists already (ours).
  absl::Status CreateBucket();
  absl::Status Put(const std::string& key, std::string_view body);
  // OK when the object is gone, or was never there.
  absl::Status Delete(const std::string& key);
  // The whole object, or [offset, offset + length) of it when length > 0.
  // NotFound when absent.
  absl::StatusOr<std::string> Get(const std::string& key, uint64_t offset = 0, uint64_t length = 0);
  // Every key under `prefix` (ListObjectsV2, all pages).
  absl::StatusOr<std::vector<std::string>> List(const std::string& prefix);

 private:
  struct Answer {
    long code = 0;
    std::string body;
  };
  // One request with retries: network errors and 5xx answers are tried
  // again with backoff; other answers are returned as they are.
  // The answer's body is at most `limit` bytes (ResourceExhausted past it).
  absl::StatusOr<Answer> Call(const std::string& method, const std::string& path_and_query,
                              std::string_view body, const std::string& range,
                              size_t limit = kMaxAnswerBytes);
  // Bounds what one answer may hold: a listing page (1,000 keys, about
  // 300 KB) or an index object (44 bytes per chunk of one pack: 1.1 MB for
  // a 4 GiB pack of 16 KiB chunks). A ranged read holds its range.
  static constexpr size_t kMaxAnswerBytes = 16 << 20;
  static constexpr size_t kMaxErrorBytes = 64 << 10;
  CURL* Take();
  void Give(CURL* h);
  // A failed attempt about to be retried, through S3Options::log, at most
  // once a second (the others are counted into the next one).
  void Notice(const std::string& what);

  const S3Options o_;
  absl::Mutex mu_;
  std::vector<CURL*> idle_ ABSL_GUARDED_BY(mu_);  // handles keep their connections
  absl::Mutex log_mu_;                            // Notice: one line at a time
  std::atomic<int64_t> last_notice_{0};           // Unix seconds
  std::atomic<uint64_t> suppressed_notices_{0};
};

// "%XX" for every byte but unreserved ones ("/" too unless keep_slash).
std::string UriEncode(std::string_view s, bool keep_slash);

}  // namespace cairn::s3
