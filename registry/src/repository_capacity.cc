// Repository: capacity. What a node holds is capped node-wide and per
// namespace; mirrored releases that are not pinned are evicted, least
// recently requested first, to make room, and come back on demand.
#include <fnmatch.h>

#include <algorithm>

#include "cairn/objects.h"
#include "cairn/repository.h"
#include "cairn/status.h"
#include "cairn/strings.h"
#include "change_feed.h"
#include "meta_schema.h"
#include "trust_state.h"

namespace cairn {

namespace {
using meta::kEvictedPrefix;
using meta::kMirroredPrefix;
// Request times kept in memory between writes.
constexpr size_t kMaxRequestTimes = 100000;

std::string Described(const std::string& key) {
  std::string s = key;
  std::replace(s.begin(), s.end(), '\0', ' ');
  return s;
}
}  // namespace

int64_t Repository::RequestTick() {
  // Microseconds of wall time, made strictly increasing: two requests in the
  // same second still come in order, and a restart starts above every tick
  // written before (unless the clock went back).
  const int64_t now = clock_->NowUnix() * 1000000;
  int64_t last = last_tick_.load();
  int64_t next;
  do {
    next = std::max(now, last + 1);
  } while (!last_tick_.compare_exchange_weak(last, next));
  return next;
}

void Repository::NoteRequested(std::string_view digest) {
  std::string d(digest);
  absl::MutexLock l(&requested_mu_);
  if (requested_.size() >= kMaxRequestTimes && !requested_.contains(d)) return;
  requested_[std::move(d)] = RequestTick();
}

absl::Status Repository::MarkMirrored(std::string_view digest) {
  return meta_->Commit(
      {WriteOp{Table::kState, StrCat(kMirroredPrefix, digest), StrCat(RequestTick())}},
      /*sync=*/false);
}

absl::Status Repository::MarkEvicted(std::string_view digest, std::string_view what) {
  return meta_->Commit({WriteOp{Table::kState, StrCat(kEvictedPrefix, digest), std::string(what)}},
                       /*sync=*/false);
}

absl::StatusOr<bool> Repository::IsEvicted(std::string_view digest) {
  auto v = meta_->Get(Table::kState, StrCat(kEvictedPrefix, digest));
  if (absl::IsNotFound(v.status())) return false;
  CAIRN_RETURN_IF_ERROR(v.status());
  return true;
}

void Repository::SetOnEvicted(std::function<void(const std::string&)> fn) {
  absl::MutexLock l(&capacity_mu_);
  on_evicted_ = std::move(fn);
}

absl::StatusOr<absl::flat_hash_map<std::string, Repository::Held>*>
Repository::HeldReleasesLocked() {
  const uint64_t head = feed_->head();  // before the scan: a commit during it rescans next time
  if (held_ && held_head_ == head) return &*held_;
  absl::flat_hash_map<std::string, Held> fresh;
  std::vector<std::pair<std::string, std::string>> releases;
  CAIRN_RETURN_IF_ERROR(
      meta_->Scan(Table::kReleases, "", [&](std::string_view k, std::string_view v) {
        releases.emplace_back(k, v);
        return true;
      }));
  for (auto& [key, digest] : releases) {
    if (held_) {
      if (auto it = held_->find(digest); it != held_->end()) {
        fresh.emplace(digest, it->second);
        continue;
      }
    }
    Held h;
    h.ns = std::string(NamespaceOf(key));
    h.key = std::move(key);
    auto payload = LoadObject(digest, /*allow_staged=*/false);
    if (payload.ok()) {
      auto m = ParseManifest(*payload);
      if (m.ok()) {
        for (const auto& f : m->files()) h.bytes += f.size();
      }
    }
    fresh.emplace(std::move(digest), std::move(h));
  }
  held_ = std::move(fresh);
  held_head_ = head;
  return &*held_;
}

bool Repository::PinnedLocked(const std::string& digest, const Held& h) const {
  const size_t nul = h.key.find('\0');
  const std::string name = h.key.substr(0, nul);
  const std::string version = nul == std::string::npos ? "" : h.key.substr(nul + 1);
  for (const std::string& pin : opts_.capacity.pins) {
    const size_t at = pin.find('@');
    if (at == std::string::npos) {
      if (fnmatch(pin.c_str(), name.c_str(), 0) == 0) return true;
      continue;
    }
    const std::string_view what = std::string_view(pin).substr(at + 1);
    if (pin.substr(0, at) == name && (what == version || what == digest)) return true;
  }
  return false;
}

absl::StatusOr<bool> Repository::ChooseVictimsLocked(int64_t need_node, const std::string& ns,
                                                     int64_t need_ns, const std::string& keep,
                                                     std::vector<std::string>* victims) {
  CAIRN_ASSIGN_OR_RETURN(auto* held, HeldReleasesLocked());
  std::vector<std::pair<int64_t, std::string>> order;  // last requested, digest
  absl::Status inner;
  CAIRN_RETURN_IF_ERROR(
      meta_->Scan(Table::kState, kMirroredPrefix, [&](std::string_view k, std::string_view v) {
        int64_t t = 0;
        if (!ParseInt(v, &t)) t = 0;  // unreadable: as old as can be
        order.emplace_back(t, std::string(k.substr(kMirroredPrefix.size())));
        return true;
      }));
  {
    absl::MutexLock l(&requested_mu_);
    for (auto& [t, d] : order) {
      if (auto it = requested_.find(d); it != requested_.end()) t = std::max(t, it->second);
    }
  }
  std::sort(order.begin(), order.end());
  for (const auto& [t, d] : order) {
    if (need_node <= 0 && need_ns <= 0) break;
    if (d == keep) continue;
    auto it = held->find(d);
    if (it == held->end() || PinnedLocked(d, it->second)) continue;
    const bool in_ns = !ns.empty() && it->second.ns == ns;
    if (need_node <= 0 && !in_ns) continue;  // only the namespace is short
    victims->push_back(d);
    need_node -= static_cast<int64_t>(it->second.bytes);
    if (in_ns) need_ns -= static_cast<int64_t>(it->second.bytes);
  }
  return need_node <= 0 && need_ns <= 0;
}

absl::Status Repository::EvictLocked(const std::vector<std::string>& victims,
                                     const std::string& why) {
  if (victims.empty()) return absl::OkStatus();
  CAIRN_ASSIGN_OR_RETURN(auto* held, HeldReleasesLocked());
  std::vector<WriteOp> ops;
  {
    // Request times since the last write, so the order survives a restart.
    absl::MutexLock l(&requested_mu_);
    for (const auto& [d, t] : requested_) {
      if (held->contains(d) && meta_->Get(Table::kState, StrCat(kMirroredPrefix, d)).ok()) {
        ops.push_back({Table::kState, StrCat(kMirroredPrefix, d), StrCat(t)});
      }
    }
    requested_.clear();
  }
  uint64_t bytes = 0;
  std::string last, all;
  {
    absl::MutexLock commit_lock(&commit_mu_);
    for (const std::string& d : victims) {
      const Held& h = held->at(d);
      auto payload = LoadObject(d, /*allow_staged=*/false);
      if (payload.ok()) {
        auto m = ParseManifest(*payload);
        if (m.ok()) {
          for (const auto& p : m->parents()) {
            ops.push_back({Table::kChildren, meta::Key2(p.manifest_digest(), d), std::nullopt});
          }
        }
      }
      ops.push_back({Table::kReleases, h.key, std::nullopt});
      ops.push_back({Table::kEnvelopes, d, std::nullopt});
      ops.push_back({Table::kObjects, d, std::nullopt});
      ops.push_back({Table::kState, StrCat(kMirroredPrefix, d), std::nullopt});
      ops.push_back({Table::kState, StrCat(kEvictedPrefix, d), Described(h.key)});
      bytes += h.bytes;
      last = StrCat(Described(h.key), " (", why, ")");
      all += StrCat(all.empty() ? "" : ", ", Described(h.key));
    }
    CAIRN_RETURN_IF_ERROR(meta_->Commit(ops, /*sync=*/true));
  }
  for (const std::string& d : victims) {
    held->erase(d);
    trust_->Cleared(d, nullptr);
  }
  list_changes_++;
  capacity_status_.set_releases_evicted(capacity_status_.releases_evicted() + victims.size());
  capacity_status_.set_bytes_evicted(capacity_status_.bytes_evicted() + bytes);
  capacity_status_.set_last_evicted(last);
  if (on_evicted_) on_evicted_(StrCat(all, " (", bytes, " bytes; ", why, ")"));
  return absl::OkStatus();
}

absl::Status Repository::MakeRoom(const cairn::v1::Manifest& m, const std::string& digest,
                                  uint64_t bytes) {
  const CapacityOptions& cap = opts_.capacity;
  const std::string ns(NamespaceOf(m.name()));
  const auto ns_cap = cap.namespace_bytes.find(ns);
  if (cap.max_bytes == 0 && ns_cap == cap.namespace_bytes.end()) return absl::OkStatus();
  absl::MutexLock l(&capacity_mu_);
  CAIRN_ASSIGN_OR_RETURN(auto* held, HeldReleasesLocked());
  if (held->contains(digest)) return absl::OkStatus();
  const uint64_t cap_here =
      std::min<uint64_t>(cap.max_bytes == 0 ? UINT64_MAX : cap.max_bytes,
                         ns_cap == cap.namespace_bytes.end() ? UINT64_MAX : ns_cap->second);
  if (bytes > cap_here) {
    std::string msg = StrCat(m.name(), " ", m.version(), " (", bytes,
                             " bytes) is larger than this node may hold (", cap_here,
                             " bytes: max_bytes or its namespace's limit); not fetched");
    capacity_status_.set_last_refused(msg);
    capacity_status_.set_last_refused_unix(clock_->NowUnix());
    return absl::OutOfRangeError(msg);
  }
  uint64_t total = 0, in_ns = 0;
  for (const auto& [d, h] : *held) {
    total += h.bytes;
    if (h.ns == ns) in_ns += h.bytes;
  }
  const int64_t need_node =
      cap.max_bytes == 0 ? 0 : static_cast<int64_t>(total + bytes) - int64_t(cap.max_bytes);
  const int64_t need_ns = ns_cap == cap.namespace_bytes.end()
                              ? 0
                              : static_cast<int64_t>(in_ns + bytes) - int64_t(ns_cap->second);
  if (need_node <= 0 && need_ns <= 0) return absl::OkStatus();
  std::vector<std::string> victims;
  CAIRN_ASSIGN_OR_RETURN(bool fits, ChooseVictimsLocked(need_node, ns, need_ns, digest, &victims));
  if (!fits) {
    std::string held_text;
    if (need_node > 0) {
      held_text = StrCat("the node holds ", total, " bytes of max_bytes ", cap.max_bytes);
    }
    if (need_ns > 0) {
      held_text += StrCat(held_text.empty() ? "" : " and ", "namespace ", ns, " holds ", in_ns,
                          " bytes of its limit ", ns_cap->second);
    }
    std::string msg = StrCat(
        "no room for ", m.name(), " ", m.version(), " (", bytes, " bytes): ", held_text,
        ", and not enough of it may be evicted (releases published here and pinned ones stay); "
        "raise the limit or unpin; a replica is fetched on demand once there is room");
    capacity_status_.set_last_refused(msg);
    capacity_status_.set_last_refused_unix(clock_->NowUnix());
    return absl::ResourceExhaustedError(msg);
  }
  return EvictLocked(victims, StrCat("room for ", m.name(), " ", m.version()));
}

absl::StatusOr<uint64_t> Repository::EnforceCapacity() {
  const CapacityOptions& cap = opts_.capacity;
  absl::MutexLock l(&capacity_mu_);
  uint64_t evicted = 0;
  auto over = [&](const std::string& ns, uint64_t limit)
                  ABSL_EXCLUSIVE_LOCKS_REQUIRED(capacity_mu_) -> absl::StatusOr<int64_t> {
    CAIRN_ASSIGN_OR_RETURN(auto* held, HeldReleasesLocked());
    uint64_t sum = 0;
    for (const auto& [d, h] : *held) {
      if (ns.empty() || h.ns == ns) sum += h.bytes;
    }
    return static_cast<int64_t>(sum) - static_cast<int64_t>(limit);
  };
  for (const auto& [ns, limit] : cap.namespace_bytes) {
    CAIRN_ASSIGN_OR_RETURN(int64_t need, over(ns, limit));
    if (need <= 0) continue;
    std::vector<std::string> victims;
    CAIRN_RETURN_IF_ERROR(ChooseVictimsLocked(0, ns, need, "", &victims).status());
    CAIRN_RETURN_IF_ERROR(EvictLocked(victims, StrCat("namespace ", ns, " over its limit")));
    evicted += victims.size();
  }
  if (cap.max_bytes > 0) {
    CAIRN_ASSIGN_OR_RETURN(int64_t need, over("", cap.max_bytes));
    if (need > 0) {
      std::vector<std::string> victims;
      CAIRN_RETURN_IF_ERROR(ChooseVictimsLocked(need, "", 0, "", &victims).status());
      CAIRN_RETURN_IF_ERROR(EvictLocked(victims, "over max_bytes"));
      evicted += victims.size();
    }
  }
  return evicted;
}

cairn::v1::CapacityStatus Repository::CapacityStatus() {
  absl::MutexLock l(&capacity_mu_);
  cairn::v1::CapacityStatus out = capacity_status_;
  out.set_max_bytes(opts_.capacity.max_bytes);
  auto held = HeldReleasesLocked();
  if (!held.ok()) return out;
  uint64_t total = 0, evictable = 0;
  for (const auto& [d, h] : **held) {
    total += h.bytes;
    if (!PinnedLocked(d, h) && meta_->Get(Table::kState, StrCat(kMirroredPrefix, d)).ok()) {
      evictable += h.bytes;
    }
  }
  out.set_held_bytes(total);
  out.set_evictable_bytes(evictable);
  return out;
}

}  // namespace cairn
