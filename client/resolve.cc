// Resolving a ref on one node or across several, verified against the trust root.
#include <condition_variable>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <thread>

#include "absl/container/flat_hash_set.h"
#include "cairn/clock.h"
#include "cairn/objects.h"
#include "cairn/status.h"
#include "cairn/strings.h"
#include "cairn/transport/grpc_status.h"
#include "cairn/verify.h"
#include "client.h"

namespace cairn::client {

using cairn::v1::Manifest;

// ---------------- Resolve ----------------

absl::StatusOr<Resolved> VerifyResolved(const cairn::v1::ResolveResponse& resp,
                                        const TrustRootView* trust, const Ref& ref,
                                        const std::string& source) {
  Resolved out;
  std::string want = ref.digest;
  int64_t now = SystemNowUnix();
  if (!ref.tag.empty()) {
    if (resp.tag_envelope().empty()) {
      return absl::DataLossError(source + " returned no signed tag for " + ref.ToString());
    }
    if (trust) {
      CAIRN_ASSIGN_OR_RETURN(out.tag, VerifyTagEnvelope(*trust, resp.tag_envelope(), now));
    } else {
      cairn::v1::Envelope e;
      cairn::v1::TagRecord rec;
      if (!e.ParseFromString(resp.tag_envelope()) || !rec.ParseFromString(e.payload())) {
        return absl::DataLossError(source + " returned a corrupt tag record");
      }
      out.tag = rec;
    }
    if (out.tag->name() != ref.name || out.tag->tag() != ref.tag) {
      return absl::PermissionDeniedError(StrCat(source, " returned tag ", out.tag->name(), ":",
                                                out.tag->tag(), " for ", ref.ToString()));
    }
    want = out.tag->manifest_digest();
    out.tag_envelope = resp.tag_envelope();
  }
  std::string digest;
  if (trust) {
    CAIRN_ASSIGN_OR_RETURN(out.manifest,
                           VerifyManifestEnvelope(*trust, resp.manifest_envelope(), &digest));
  } else {
    cairn::v1::Envelope e;
    if (!e.ParseFromString(resp.manifest_envelope())) {
      return absl::DataLossError(source + " returned a corrupt manifest envelope");
    }
    CAIRN_ASSIGN_OR_RETURN(out.manifest, ParseManifest(e.payload()));
    digest = DigestName(Sha256Of(e.payload()));
  }
  if (!want.empty() && digest != want) {
    return absl::PermissionDeniedError(
        StrCat(source, " returned manifest ", digest, " but ", ref.ToString(), " names ", want));
  }
  if (out.manifest.name() != ref.name) {
    return absl::PermissionDeniedError(
        StrCat(source, " returned a manifest of ", out.manifest.name(), " for ", ref.name));
  }
  if (!ref.version.empty() && out.manifest.version() != ref.version) {
    return absl::PermissionDeniedError(
        StrCat(source, " returned version ", out.manifest.version(), " for ", ref.ToString()));
  }
  out.digest = digest;
  out.envelope = resp.manifest_envelope();
  if (!resp.yank_envelope().empty()) {
    // A yank a mirror cannot forge (with a trust root); one that does not
    // verify or names another release is ignored.
    auto y = trust ? VerifyYankEnvelope(*trust, resp.yank_envelope())
                   : DecodeYankEnvelope(resp.yank_envelope());
    if (y.ok() && y->manifest_digest() == digest) out.yank = std::move(*y);
  }
  return out;
}

absl::StatusOr<Resolved> ResolveVerified(Connection& node, const TrustRootView* trust,
                                         const std::string& ref_text, bool include_withheld,
                                         Cancellation* cancel, const ResolveExtras& extras) {
  CAIRN_ASSIGN_OR_RETURN(Ref ref, ParseRef(ref_text));
  cairn::v1::ResolveRequest req;
  req.set_ref(ref_text);
  req.set_include_withheld(include_withheld && trust == nullptr);
  req.set_chunk_list_bytes(extras.list_bytes);
  cairn::v1::ResolveResponse resp;
  auto ctx = node.Context();
  int cb = cancel ? cancel->AddCallback([c = ctx.get()] { c->TryCancel(); }) : 0;
  grpc::Status st = node.registry()->Resolve(ctx.get(), req, &resp);
  if (cancel) cancel->RemoveCallback(cb);
  CAIRN_RETURN_IF_ERROR(FromGrpc(st, StrCat("resolve ", ref.ToString(), " on ", node.address())));
  // Where this node serves chunks over HTTP, if it does (a hint: what comes
  // from there is verified like the rest).
  const uint32_t port = resp.chunks_http_port();
  node.set_chunks_http_port(port > 0 && port < 65536 ? static_cast<int>(port) : 0);
  if (extras.late_trust) {
    CAIRN_ASSIGN_OR_RETURN(trust, extras.late_trust());
  }
  CAIRN_ASSIGN_OR_RETURN(Resolved out, VerifyResolved(resp, trust, ref, "node " + node.address()));
  // At most what was asked for is kept, whatever a node sends.
  size_t kept = 0;
  for (std::string& list : *resp.mutable_chunk_lists()) {
    kept += list.size();
    if (kept > extras.list_bytes) break;
    out.chunk_lists.push_back(std::move(list));
  }
  return out;
}

std::optional<std::string> YankedTagTarget(Connection& node, const std::string& ref_text,
                                           const absl::Status& resolving) {
  auto ref = ParseRef(ref_text);
  if (!ref.ok() || ref->tag.empty() || !absl::IsFailedPrecondition(resolving) ||
      resolving.message().find("yanked") == std::string_view::npos) {
    return std::nullopt;
  }
  auto listed = ListNames(node, ref->name);
  if (!listed.ok()) return std::nullopt;
  for (const auto& e : listed->entries()) {
    if (e.name() != ref->name) continue;
    for (const auto& t : e.tags()) {
      if (t.tag() == ref->tag) return StrCat(ref->name, "@", t.manifest_digest());
    }
  }
  return std::nullopt;
}

namespace {

// Runs fn(i, cancel) for every i on its own thread. Returns once all
// finished, or once `ok` held for one result and a grace period passed (as
// long as that first success took, at least 100 ms): then `cancel` fires and
// the slower ones end promptly, their results replaced by `late(i)`.
template <typename T>
std::vector<T> RaceAll(size_t n, const std::function<T(size_t, Cancellation*)>& fn,
                       const std::function<bool(const T&)>& ok,
                       const std::function<T(size_t)>& late) {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::optional<T>> got(n);
  size_t done = 0;
  std::optional<std::chrono::steady_clock::time_point> first_ok;
  Cancellation cancel;
  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (size_t i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      T v = fn(i, &cancel);
      std::lock_guard<std::mutex> l(mu);
      if (!first_ok && ok(v)) first_ok = std::chrono::steady_clock::now();
      if (!cancel.cancelled()) got[i] = std::move(v);
      done++;
      cv.notify_all();
    });
  }
  {
    std::unique_lock<std::mutex> l(mu);
    cv.wait(l, [&] { return done == n || first_ok.has_value(); });
    if (done < n) {
      auto grace = std::max<std::chrono::steady_clock::duration>(*first_ok - t0,
                                                                 std::chrono::milliseconds(100));
      cv.wait_until(l, *first_ok + grace, [&] { return done == n; });
    }
  }
  {
    std::lock_guard<std::mutex> l(mu);  // what arrives from now on is late
    if (done < n) cancel.Cancel();
  }
  for (auto& t : threads) t.join();
  std::vector<T> out;
  for (size_t i = 0; i < n; ++i) out.push_back(got[i] ? std::move(*got[i]) : late(i));
  return out;
}

}  // namespace

absl::StatusOr<std::vector<std::unique_ptr<Connection>>> OpenAll(
    const std::vector<std::string>& addresses, int timeout_seconds,
    std::vector<std::string>* unreachable, const TlsOptions& tls) {
  if (addresses.empty()) return absl::InvalidArgumentError("no node given");
  using Opened = absl::StatusOr<std::unique_ptr<Connection>>;
  auto got = RaceAll<Opened>(
      addresses.size(),
      [&](size_t i, Cancellation* cancel) {
        return Connection::Open(addresses[i], timeout_seconds, tls, cancel);
      },
      [](const Opened& o) { return o.ok(); },
      [&](size_t i) {
        return absl::DeadlineExceededError("node " + addresses[i] +
                                           " was slow to connect: not waited for");
      });
  std::vector<std::unique_ptr<Connection>> out;
  std::vector<std::string> errors;
  for (auto& g : got) {
    if (g.ok()) {
      out.push_back(std::move(*g));
      continue;
    }
    errors.push_back(std::string(g.status().message()));
    if (unreachable) unreachable->push_back(errors.back());
  }
  if (out.empty()) {
    if (errors.size() == 1) return absl::UnavailableError(errors[0]);
    return absl::UnavailableError("no node reachable: " + StrJoin(errors, "; "));
  }
  return out;
}

absl::StatusOr<MultiResolved> ResolveAcross(const std::vector<Connection*>& nodes,
                                            const TrustRootView* trust, const std::string& ref,
                                            const ResolveExtras& extras) {
  // Every node is asked; once one answered, the others get as long again
  // (a slow mirror costs about one round trip of the fastest, not a timeout).
  std::vector<absl::StatusOr<Resolved>> got = RaceAll<absl::StatusOr<Resolved>>(
      nodes.size(),
      [&](size_t i, Cancellation* cancel) {
        return ResolveVerified(*nodes[i], trust, ref, /*include_withheld=*/false, cancel, extras);
      },
      [](const absl::StatusOr<Resolved>& r) { return r.ok(); },
      [&](size_t i) {
        return absl::DeadlineExceededError("node " + nodes[i]->address() +
                                           " answered too slowly: not waited for");
      });
  MultiResolved out;
  std::optional<size_t> best;
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (!got[i].ok()) {
      out.warnings.push_back(std::string(got[i].status().message()));
      continue;
    }
    if (!best) {
      best = i;
      continue;
    }
    const Resolved& b = *got[*best];
    const Resolved& r = *got[i];
    if (!r.tag || !b.tag) continue;  // by digest: every answer is the same release
    if (r.tag->version() > b.tag->version()) {
      best = i;
    } else if (r.tag->version() == b.tag->version() && r.digest != b.digest) {
      out.warnings.push_back(StrCat(
          "nodes ", nodes[*best]->address(), " and ", nodes[i]->address(), " hold ", r.tag->name(),
          ":", r.tag->tag(), " version ", r.tag->version(),
          " naming different manifests (a signing error); using ", nodes[*best]->address(), "'s"));
    }
  }
  if (!best) {
    // The most telling error: a verification failure beats "not found".
    for (auto code : {absl::StatusCode::kPermissionDenied, absl::StatusCode::kDataLoss,
                      absl::StatusCode::kFailedPrecondition, absl::StatusCode::kNotFound}) {
      for (auto& g : got) {
        if (g.status().code() == code) {
          if (nodes.size() == 1) return g.status();
          return absl::Status(code, StrJoin(out.warnings, "; "));
        }
      }
    }
    if (nodes.size() == 1) return got[0].status();
    return absl::UnavailableError(StrJoin(out.warnings, "; "));
  }
  out.resolved = std::move(*got[*best]);
  out.node = *best;
  // Nodes that hold this very release first: they have its chunk lists.
  out.order.push_back(*best);
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (i != *best && got[i].ok() && got[i]->digest == out.resolved.digest) out.order.push_back(i);
  }
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (std::find(out.order.begin(), out.order.end(), i) == out.order.end()) out.order.push_back(i);
  }
  return out;
}

}  // namespace cairn::client
