#include "on_demand.h"

#include "cairn/objects.h"
#include "cairn/status.h"
#include "cairn/strings.h"
#include "cairn/transport/grpc_upstream.h"
#include "cairn/verify.h"
#include "hf_model.h"
#include "spdlog/spdlog.h"

namespace cairn::node {

absl::Status OnDemand::Fetch::status() const {
  absl::MutexLock l(&mu_);
  return status_;
}

void OnDemand::Fetch::OnDone(std::function<void(const absl::Status&)> fn) {
  absl::Status s;
  {
    absl::MutexLock l(&mu_);
    if (!finished_) {
      waiters_.push_back(std::move(fn));
      return;
    }
    s = status_;
  }
  fn(s);
}

void OnDemand::Fetch::Finish(absl::Status s) {
  std::vector<std::function<void(const absl::Status&)>> waiters;
  {
    absl::MutexLock l(&mu_);
    status_ = s;
    finished_ = true;
    waiters.swap(waiters_);
  }
  done = true;
  for (auto& w : waiters) w(s);
}

OnDemand::OnDemand(Repository* repo, OnDemandConfig config)
    : repo_(repo), config_(std::move(config)) {}

OnDemand::~OnDemand() { Stop(); }

void OnDemand::Stop() {
  cancel_.Cancel();
  std::list<std::pair<std::thread, std::shared_ptr<Fetch>>> threads;
  {
    absl::MutexLock l(&mu_);
    threads.swap(threads_);
  }
  for (auto& [t, f] : threads) t.join();
}

bool OnDemand::WaitIdle(absl::Time deadline) {
  absl::MutexLock l(&mu_);
  auto idle = [this] { return in_flight_.load() == 0; };
  return mu_.AwaitWithDeadline(absl::Condition(&idle), deadline);
}

absl::StatusOr<cairn::v1::ResolveResponse> OnDemand::ResolveAt(Upstream& up,
                                                               const std::string& name,
                                                               const std::string& ref) {
  if (!ref.empty() && ref[0] == '@') return up.Resolve(name + ref);
  if (ValidateTag(ref).ok()) {
    auto by_tag = up.Resolve(name + ":" + ref);
    if (!absl::IsNotFound(by_tag.status())) return by_tag;
  }
  // A version, or a commit id made from a manifest digest: the summary.
  CAIRN_ASSIGN_OR_RETURN(cairn::v1::SummaryResponse s, up.Summary());
  for (const auto& r : s.releases()) {
    if (r.name() != name) continue;
    if (r.version() == ref || hf::DerivedCommitId(r.manifest_digest()) == ref) {
      return up.Resolve(name + "@" + r.manifest_digest());
    }
  }
  return absl::NotFoundError(StrCat(up.address(), " has no ", ref, " of ", name));
}

absl::StatusOr<std::shared_ptr<OnDemand::Fetch>> OnDemand::Begin(const std::string& name,
                                                                 const std::string& ref,
                                                                 const std::string& first_path,
                                                                 int hops) {
  if (hops >= kMaxHops) {
    return absl::NotFoundError(StrCat(name, " is not fetched on demand here: the request already ",
                                      "passed ", hops, " nodes fetching on demand"));
  }
  return Start(name, ref, first_path, /*repair=*/false, hops);
}

absl::Status OnDemand::Repair(const std::string& name, const std::string& digest) {
  auto f = Start(name, "@" + digest, "", /*repair=*/true);
  if (!f.ok()) spdlog::warn("repair of {}@{}: {}", name, digest, f.status().ToString());
  return f.status();
}

absl::StatusOr<std::shared_ptr<OnDemand::Fetch>> OnDemand::Start(const std::string& name,
                                                                 const std::string& ref,
                                                                 const std::string& first_path,
                                                                 bool repair, int hops) {
  CAIRN_RETURN_IF_ERROR(ValidateName(name));
  if (config_.upstreams.empty()) return absl::NotFoundError("this node has no upstream");
  if (cancel_.cancelled() || closed_) return absl::UnavailableError("the node is stopping");
  if (std::string why = config_.policy.Refuses(name, 0); !why.empty()) {
    return absl::NotFoundError(StrCat(name, " is not fetched on demand here: ", why));
  }
  std::string last_error;
  for (const std::string& address : config_.upstreams) {
    auto up = std::make_unique<GrpcUpstream>(address, config_.timeout_seconds, config_.peers,
                                             config_.streams, config_.tls);
    up->SetLog([](const std::string& line) { spdlog::warn("replication: {}", line); });
    up->SetOnDemandHops(hops + 1);
    auto r = ResolveAt(*up, name, ref);
    if (!r.ok()) {
      last_error = r.status().ToString();
      continue;
    }
    std::string digest;
    auto m = VerifyManifestEnvelope(repo_->trust(), r->manifest_envelope(), &digest);
    if (!m.ok() || m->name() != name || digest != r->manifest_digest()) {
      last_error = StrCat(address, " served a release of ", name, " that does not verify here: ",
                          m.ok() ? "wrong name or digest" : m.status().ToString());
      spdlog::warn("on-demand: {}", last_error);
      continue;
    }
    uint64_t bytes = 0;
    for (const auto& f : m->files()) bytes += f.size();
    if (std::string why = config_.policy.Refuses(name, bytes); !why.empty()) {
      return absl::NotFoundError(StrCat(name, " is not fetched on demand here: ", why));
    }
    absl::MutexLock l(&mu_);
    // Reap fetches that ended.
    for (auto it = threads_.begin(); it != threads_.end();) {
      if (it->second->done) {
        it->first.join();
        running_.erase(it->second->digest);
        it = threads_.erase(it);
      } else {
        ++it;
      }
    }
    if (auto it = running_.find(digest); it != running_.end()) return it->second;
    if (!repair) {  // room first (capacity): a refusal is an answer, not a failed fetch
      absl::Status room = repo_->MakeRoom(*m, digest, bytes);
      if (absl::IsOutOfRange(room) || absl::IsResourceExhausted(room)) {
        return absl::ResourceExhaustedError(room.message());
      }
      CAIRN_RETURN_IF_ERROR(room);
    }
    auto fetch = std::make_shared<Fetch>();
    fetch->digest = digest;
    fetch->manifest = std::move(*m);
    running_[digest] = fetch;
    in_flight_++;
    spdlog::info("on-demand: {} {} {} ({} bytes) from {}", repair ? "repairing" : "fetching", name,
                 fetch->manifest.version(), bytes, address);
    threads_.emplace_back(
        std::thread([this, fetch, r = std::move(*r), first_path, repair, address,
                     up = std::move(up)]() mutable {
          ReplicationPolicy policy = config_.policy;
          if (auto cap = config_.max_bytes_per_second.find(address);
              cap != config_.max_bytes_per_second.end()) {
            policy.max_bytes_per_second = cap->second;
          }
          Replicator rep(
              repo_, std::move(up), [](const std::string& s) { spdlog::info("on-demand: {}", s); },
              std::move(policy));
          rep.set_cancel(&cancel_);
          // Stopping the node ends a transfer in progress at once.
          const int id = cancel_.AddCallback([u = rep.upstream()] { u->Cancel(); });
          absl::Status st = rep.FetchRelease(r, first_path, repair);
          cancel_.RemoveCallback(id);
          if (config_.on_fetched) config_.on_fetched(address, rep.stats());
          if (st.ok()) {
            fetched_++;
            spdlog::info("on-demand: committed {} {}", fetch->manifest.name(),
                         fetch->manifest.version());
          } else {
            failed_++;
            spdlog::warn("on-demand: {} {}: {}", fetch->manifest.name(), fetch->manifest.version(),
                         st.ToString());
          }
          {
            absl::MutexLock l(&mu_);  // wakes WaitIdle
            in_flight_--;
          }
          fetch->Finish(std::move(st));
        }),
        fetch);
    return fetch;
  }
  return absl::NotFoundError(StrCat("no upstream has ", ref, " of ", name, ": ", last_error));
}

}  // namespace cairn::node
