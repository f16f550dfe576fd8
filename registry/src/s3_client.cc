#include "s3_client.h"

#include <chrono>
#include <thread>

#include "absl/time/clock.h"
#include "cairn/status.h"
#include "cairn/strings.h"

namespace cairn::s3 {

namespace {

struct Sink {
  std::string* out;
  size_t limit;
};

size_t Write(char* p, size_t size, size_t n, void* ud) {
  auto* s = static_cast<Sink*>(ud);
  if (s->out->size() + size * n > s->limit) return 0;  // aborts the transfer
  s->out->append(p, size * n);
  return size * n;
}

// The S3 error code in an XML error answer ("NoSuchKey"), or "".
std::string ErrorCode(const std::string& body) {
  const auto a = body.find("<Code>");
  const auto b = body.find("</Code>");
  if (a == std::string::npos || b == std::string::npos || b < a) return "";
  return body.substr(a + 6, std::min<size_t>(b - a - 6, 64));
}

}  // namespace

std::string UriEncode(std::string_view s, bool keep_slash) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/')) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

Client::Client(S3Options o) : o_(std::move(o)) {}

Client::~Client() {
  absl::MutexLock l(&mu_);
  for (CURL* h : idle_) curl_easy_cleanup(h);
}

CURL* Client::Take() {
  {
    absl::MutexLock l(&mu_);
    if (!idle_.empty()) {
      CURL* h = idle_.back();
      idle_.pop_back();
      return h;
    }
  }
  return curl_easy_init();
}

void Client::Give(CURL* h) {
  absl::MutexLock l(&mu_);
  idle_.push_back(h);
}

void Client::Notice(const std::string& what) {
  if (!o_.log) return;
  // At most one a second: a bucket that is down fails every request at once.
  const int64_t now = absl::ToUnixSeconds(absl::Now());
  int64_t last = last_notice_.load();
  if (now <= last || !last_notice_.compare_exchange_strong(last, now)) {
    suppressed_notices_++;
    return;
  }
  const uint64_t more = suppressed_notices_.exchange(0);
  absl::MutexLock l(&log_mu_);  // one line at a time: several threads call
  o_.log(more == 0 ? what : StrCat(what, " (and ", more, " more like it)"));
}

absl::StatusOr<Client::Answer> Client::Call(const std::string& method,
                                            const std::string& path_and_query,
                                            std::string_view body, const std::string& range,
                                            size_t limit) {
  const std::string url = StrCat(o_.endpoint, "/", o_.bucket, path_and_query);
  const std::string sigv4 = StrCat("aws:amz:", o_.region, ":s3");
  std::string last;
  for (int attempt = 0; attempt < std::max(1, o_.max_attempts); ++attempt) {
    if (attempt > 0) {
      Notice(StrCat(last, "; trying again (attempt ", attempt + 1, " of ", o_.max_attempts, ")"));
      std::this_thread::sleep_for(std::chrono::milliseconds(100 << (attempt - 1)));
    }
    CURL* h = Take();
    if (h == nullptr) return absl::ResourceExhaustedError("cannot make a curl handle");
    curl_easy_reset(h);
    Answer a;
    Sink sink{&a.body, limit};
    curl_slist* headers = nullptr;
    // SigV4 over S3 needs the payload's hash named; the bytes are checked
    // by digest on every read instead.
    // (No "Expect:" to drop 100-continue: curl 7.88 signs the emptied
    // header and radosgw then refuses the signature.)
    headers = curl_slist_append(headers, "x-amz-content-sha256: UNSIGNED-PAYLOAD");
    std::string range_header;
    if (!range.empty()) {
      range_header = "Range: bytes=" + range;
      headers = curl_slist_append(headers, range_header.c_str());
    }
    curl_easy_setopt(h, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h, CURLOPT_AWS_SIGV4, sigv4.c_str());
    curl_easy_setopt(h, CURLOPT_USERNAME, o_.access_key.c_str());
    curl_easy_setopt(h, CURLOPT_PASSWORD, o_.secret_key.c_str());
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, static_cast<long>(o_.timeout_seconds));
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, Write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
    if (method == "PUT") {
      headers = curl_slist_append(headers, "Content-Type: application/octet-stream");
      curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "PUT");
      curl_easy_setopt(h, CURLOPT_POSTFIELDS, body.data());
      curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    } else if (method != "GET") {
      curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method.c_str());
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    const CURLcode rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &a.code);
    curl_slist_free_all(headers);
    Give(h);
    if (rc == CURLE_WRITE_ERROR) {
      return absl::ResourceExhaustedError(
          StrCat("S3 ", method, " ", path_and_query, ": answer larger than ", limit));
    }
    if (rc != CURLE_OK) {
      last = StrCat("cannot reach S3 at ", o_.endpoint, ": ", curl_easy_strerror(rc));
      continue;
    }
    if (a.code >= 500) {
      // The URL names endpoint, bucket and key (never the credentials).
      const std::string code = ErrorCode(a.body);
      last = StrCat("S3 ", method, " ", url, " answered ", a.code, code.empty() ? "" : " ", code,
                    code.empty() ? " (is this an S3 endpoint?)" : "");
      continue;
    }
    return a;
  }
  return absl::UnavailableError(StrCat(last, " (", o_.max_attempts, " attempts)"));
}

namespace {

absl::Status FromAnswer(long code, const std::string& body, const std::string& what) {
  if (code >= 200 && code < 300) return absl::OkStatus();
  const std::string err = ErrorCode(body);
  if (code == 404) return absl::NotFoundError(StrCat(what, ": not found (", err, ")"));
  if (code == 403) {
    return absl::PermissionDeniedError(StrCat(what, ": S3 refused the credentials (", err,
                                              "); check CAIRN_S3_ACCESS_KEY, "
                                              "CAIRN_S3_SECRET_KEY and CAIRN_S3_REGION"));
  }
  return absl::InternalError(StrCat(what, ": S3 answered ", code, " ", err));
}

}  // namespace

absl::Status Client::CreateBucket() {
  CAIRN_ASSIGN_OR_RETURN(Answer a, Call("PUT", "", "", ""));
  if (a.code == 409 && ErrorCode(a.body) == "BucketAlreadyOwnedByYou") return absl::OkStatus();
  return FromAnswer(a.code, a.body, "create bucket " + o_.bucket);
}

absl::Status Client::Put(const std::string& key, std::string_view body) {
  CAIRN_ASSIGN_OR_RETURN(Answer a, Call("PUT", "/" + UriEncode(key, true), body, ""));
  return FromAnswer(a.code, a.body, "store " + key);
}

absl::Status Client::Delete(const std::string& key) {
  CAIRN_ASSIGN_OR_RETURN(Answer a, Call("DELETE", "/" + UriEncode(key, true), "", ""));
  if (a.code == 404) return absl::OkStatus();
  return FromAnswer(a.code, a.body, "delete " + key);
}

absl::StatusOr<std::string> Client::Get(const std::string& key, uint64_t offset, uint64_t length) {
  const std::string range = length > 0 ? StrCat(offset, "-", offset + length - 1) : "";
  // A ranged read holds its range (a store that ignores ranges and sends
  // the whole object is refused, not buffered), or an error's XML (a 404
  // of a pack deleted is a NotFound, not an answer too large).
  const size_t limit = length > 0 ? static_cast<size_t>(length) + kMaxErrorBytes : kMaxAnswerBytes;
  CAIRN_ASSIGN_OR_RETURN(Answer a, Call("GET", "/" + UriEncode(key, true), "", range, limit));
  CAIRN_RETURN_IF_ERROR(FromAnswer(a.code, a.body, "read " + key));
  if (length > 0 && a.code != 206 && offset > 0) {
    return absl::DataLossError(StrCat("read ", key, ": the store ignored the range"));
  }
  return std::move(a.body);
}

absl::StatusOr<std::vector<std::string>> Client::List(const std::string& prefix) {
  std::vector<std::string> keys;
  std::string token;
  for (;;) {
    // Parameters in sorted order: curl 7.88 signs the query as given, and
    // SigV4 wants it sorted (radosgw refused the second page otherwise).
    std::string q = "?";
    if (!token.empty()) q += "continuation-token=" + UriEncode(token, false) + "&";
    q += "list-type=2&prefix=" + UriEncode(prefix, false);
    CAIRN_ASSIGN_OR_RETURN(Answer a, Call("GET", q, "", ""));
    CAIRN_RETURN_IF_ERROR(FromAnswer(a.code, a.body, "list " + prefix));
    size_t at = 0;
    while ((at = a.body.find("<Key>", at)) != std::string::npos) {
      const size_t end = a.body.find("</Key>", at);
      if (end == std::string::npos) break;
      keys.push_back(a.body.substr(at + 5, end - at - 5));
      at = end;
    }
    const auto t = a.body.find("<NextContinuationToken>");
    if (a.body.find("<IsTruncated>true</IsTruncated>") == std::string::npos ||
        t == std::string::npos) {
      break;
    }
    const auto te = a.body.find("</NextContinuationToken>", t);
    if (te == std::string::npos) break;
    token = a.body.substr(t + 23, te - t - 23);
  }
  return keys;
}

}  // namespace cairn::s3

namespace cairn {

S3Options S3OptionsFromEnvironment(S3Options o) {
  auto env = [](const char* name, std::string* into) {
    if (const char* v = std::getenv(name); v != nullptr && *v != '\0') *into = v;
  };
  env("CAIRN_S3_ENDPOINT", &o.endpoint);
  env("CAIRN_S3_REGION", &o.region);
  env("CAIRN_S3_ACCESS_KEY", &o.access_key);
  env("CAIRN_S3_SECRET_KEY", &o.secret_key);
  return o;
}

absl::Status ParseS3Url(const std::string& url, S3Options* o) {
  constexpr std::string_view kScheme = "s3://";
  if (url.rfind(kScheme, 0) != 0) {
    return absl::InvalidArgumentError("not an s3://BUCKET[/PREFIX] address: " + url);
  }
  const std::string rest = url.substr(kScheme.size());
  const auto slash = rest.find('/');
  o->bucket = rest.substr(0, slash);
  o->prefix = slash == std::string::npos ? "" : rest.substr(slash + 1);
  if (!o->prefix.empty() && o->prefix.back() != '/') o->prefix += '/';
  const bool bucket_ok =
      o->bucket.size() >= 3 && o->bucket.size() <= 63 &&
      o->bucket.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789.-") == std::string::npos;
  if (!bucket_ok) {
    return absl::InvalidArgumentError("bad bucket name \"" + o->bucket +
                                      "\" (3-63 of a-z, 0-9, '.', '-'): " + url);
  }
  if (o->prefix.find("//") != std::string::npos || o->prefix.find("..") != std::string::npos) {
    return absl::InvalidArgumentError("bad prefix in " + url);
  }
  return absl::OkStatus();
}

}  // namespace cairn
