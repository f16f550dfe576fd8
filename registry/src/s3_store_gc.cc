// Garbage collection on a bucket several frontends share.
//
// One frontend collects (S3Options::collector); every frontend has a say.
// Under PREFIX/gc/ in the bucket:
//   frontends/<id>            each frontend, written at each of its starts
//   rounds/<n>/condemned      the packs round n would delete, a 16-hex id
//                             a line
//   rounds/<n>/answer-<id>    the chunks of those packs frontend <id> still
//                             counts on: 32-byte digest and u64 pack id
//                             (native order) of each, back to back
//   rounds/<n>/done           the round's end: the chunks rescued in it
// A round:
//  1. A pass of the collector nominates the chunks its own mark does not
//     reach and that are past the grace period (Remove), then (Compact)
//     picks the packs mostly of such chunks, copies their other records to
//     new packs, and writes rounds/<n>/condemned.
//  2. Each frontend, once it has read that list, counts no chunk as held
//     whose place is in a condemned pack (asked for, it is copied anew;
//     reads still find it), and only then answers: the chunks of those packs its
//     releases, pending releases, staged lists or recent clients (Has, Put)
//     count on. The collector answers its own rounds the same way.
//  3. A later pass of the collector, once every registered frontend has
//     answered, deletes each condemned pack no answer names a chunk of (its
//     index object first, then the pack), keeps the others, and writes
//     rounds/<n>/done with the rescued chunks: the next round copies them
//     out of their packs. Frontends forget the deleted packs.
// A chunk a frontend told a client of before it read the list is in its
// answer; one asked for after that, whose only place is condemned, is
// copied to a new pack first (CopyForward). The collector ends only the
// rounds it opened, from its own record of the packs (a list planted in
// the bucket deletes nothing). A registered frontend that never answers
// holds the round open: a decommissioned one is forgotten
// (cairn-node s3-frontends --forget ID).
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <ctime>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_join.h"
#include "cairn/status.h"
#include "cairn/strings.h"
#include "s3_gc_rounds.h"
#include "s3_store_impl.h"

namespace cairn::s3 {

namespace {
// The most chunks nominated for one round (128 MiB of digests).
constexpr size_t kMaxNominated = size_t{1} << 22;
}  // namespace

int64_t S3ChunkStore::NowUnix() const {
  return o_.clock != nullptr ? o_.clock->NowUnix() : static_cast<int64_t>(std::time(nullptr));
}

absl::Status S3ChunkStore::Register() {
  char host[256] = {};
  if (::gethostname(host, sizeof(host) - 1) != 0) host[0] = '\0';
  if (started_ == 0) started_ = NowUnix();
  registered_ = std::chrono::steady_clock::now();
  return client_.Put(o_.prefix + "gc/frontends/" + fid_,
                     StrCat("host=", host, " index=", o_.index_dir, " started=", started_,
                            " seen=", NowUnix(), "\n"));
}

absl::Status S3ChunkStore::LoadRounds(const Rounds& gc,
                                      const absl::flat_hash_set<uint64_t>& listed) {
  std::vector<uint64_t> released, to_read;
  {
    absl::MutexLock l(&mu_);
    for (auto it = condemned_.begin(); it != condemned_.end();) {
      const auto r = gc.rounds.find(it->first);
      if (it->first == opening_ ||
          (r != gc.rounds.end() && r->second.condemned && !r->second.done)) {
        ++it;
        continue;
      }
      released.insert(released.end(), it->second.begin(), it->second.end());
      it = condemned_.erase(it);
    }
    // A round's packs the collector deleted are forgotten (before any pack
    // is condemned anew: no place in them is taken again); the others it
    // kept count as held again.
    for (uint64_t id : released) {
      if (!CondemnedLocked(id) && !listed.contains(id) && index_->Known(id)) {
        CAIRN_RETURN_IF_ERROR(DropPackLocked(id));
      }
    }
    // Answers are this frontend's own record (one planted in its name is
    // overwritten); a round that is gone is forgotten, refused or not.
    for (auto it = answered_.begin(); it != answered_.end();) {
      it = condemned_.contains(it->first) ? std::next(it) : answered_.erase(it);
    }
    std::erase_if(refused_, [&](uint64_t n) { return !gc.rounds.contains(n); });
    for (const auto& [n, r] : gc.rounds) {
      if (r.answered.contains(fid_)) {
        if (auto a = answered_.find(n); a != answered_.end()) a->second.listed = true;
      } else if (auto a = answered_.find(n); a != answered_.end()) {
        a->second.listed = false;  // deleted: written again
      }
      if (r.condemned && !r.done && !condemned_.contains(n) && !refused_.contains(n)) {
        to_read.push_back(n);
      }
    }
  }
  if (!gc.frontends.contains(fid_)) {
    // Forgotten while running (or the object deleted): rounds must wait
    // for this frontend again.
    Notice(StrCat("S3 frontend ", fid_, " was not registered in s3://", o_.bucket, "/", o_.prefix,
                  " (forgotten while it runs?): registered again"));
    CAIRN_RETURN_IF_ERROR(Register());
  }
  for (uint64_t n : to_read) {
    auto body = client_.Get(RoundKey(n, "condemned"));
    if (absl::IsNotFound(body.status())) continue;  // ended meanwhile
    if (absl::IsUnavailable(body.status())) return body.status();
    auto ids = body.ok() ? ParseIds(*body) : absl::StatusOr<std::vector<uint64_t>>(body.status());
    absl::MutexLock l(&mu_);
    if (!ids.ok()) {
      // Not written by a collector of ours: never answered, so the round
      // stays open and deletes nothing.
      refused_.insert(n);
      Notice(StrCat("S3 collection round ", RoundKey(n, "condemned"),
                    " ignored: ", ids.status().message()));
      continue;
    }
    std::set<uint64_t>& packs = condemned_[n];
    packs.insert(ids->begin(), ids->end());
    for (uint64_t id : packs) PromoteLocked(id);
  }
  return absl::OkStatus();
}

void S3ChunkStore::PromoteLocked(uint64_t pack) {
  std::vector<IndexEntry> records;
  if (!index_->Records(pack, &records).ok()) return;
  for (const IndexEntry& e : records) {
    Loc held;
    if (!index_->Find(e.digest, &held) || held.pack != pack) continue;
    for (auto [it, end] = extra_.equal_range(e.digest); it != end; ++it) {
      if (CondemnedLocked(it->second.pack) || !index_->Known(it->second.pack)) continue;
      const Loc copy = it->second;
      extra_.erase(it);
      if (index_->Set(e.digest, copy).ok()) AddPlace(&extra_, e.digest, held);
      break;
    }
  }
}

bool S3ChunkStore::CondemnedPlaceLocked(const Digest& d, Loc* loc) {
  return index_->Find(d, loc) && !loc->suspect && CondemnedLocked(loc->pack);
}

absl::StatusOr<bool> S3ChunkStore::CopyForward(const Digest& d, const Loc& loc) {
  std::string data;
  absl::Status st = ReadAt(d, loc, &data);
  if (st.ok()) st = Put(d, data, PutMode::kVerify);
  if (absl::IsDataLoss(st) || absl::IsNotFound(st)) return false;  // not held, simply
  CAIRN_RETURN_IF_ERROR(st);
  return true;
}

absl::Status S3ChunkStore::DropPackLocked(uint64_t id) {
  std::vector<IndexEntry> records;
  CAIRN_RETURN_IF_ERROR(index_->Records(id, &records));
  for (const IndexEntry& e : records) {
    Loc held;
    if (!index_->Find(e.digest, &held) || held.pack != id) continue;
    // Another known place, in a pack still there, becomes the chunk's: one
    // outside condemned packs if there is one, else a condemned one (still
    // readable, and named in this frontend's answer, so kept).
    auto best = extra_.end();
    for (auto [it, end] = extra_.equal_range(e.digest); it != end; ++it) {
      if (it->second.pack == id || !index_->Known(it->second.pack)) continue;
      if (best == extra_.end() || !CondemnedLocked(it->second.pack)) best = it;
    }
    if (best != extra_.end()) {
      const Loc other = best->second;
      extra_.erase(best);
      CAIRN_RETURN_IF_ERROR(index_->Set(e.digest, other));
    }
  }
  // No place in the pack stays known (one could be taken for the chunk's).
  for (auto* m : {&extra_, &suspect_}) {
    for (auto it = m->begin(); it != m->end();) {
      it = it->second.pack == id ? m->erase(it) : std::next(it);
    }
  }
  return index_->DropObject(id);
}

void S3ChunkStore::PackGoneLocked(uint64_t pack) {
  std::vector<IndexEntry> records;
  if (!index_->Records(pack, &records).ok()) return;
  for (const IndexEntry& e : records) {
    Loc held;
    if (!index_->Find(e.digest, &held) || !SameLoc(held, e.loc) || held.suspect) continue;
    held.suspect = true;  // tried again later: a pack put back is found
    held.verified = false;
    index_->Set(e.digest, held).IgnoreError();
  }
}

absl::Status S3ChunkStore::AnswerCollection(const NeededChunks& needed) {
  CAIRN_RETURN_IF_ERROR(Refresh());
  std::vector<uint64_t> rounds;
  {
    absl::MutexLock l(&mu_);
    for (const auto& [n, packs] : condemned_) {
      if (n == opening_) continue;
      auto a = answered_.find(n);
      if (a == answered_.end() || !a->second.listed) rounds.push_back(n);
    }
  }
  // An answer of ours replaced by other bytes is written again.
  {
    std::vector<std::pair<uint64_t, std::string>> check;
    {
      absl::MutexLock l(&mu_);
      for (const auto& [n, a] : answered_) {
        if (a.listed) check.emplace_back(n, a.bytes);
      }
    }
    for (const auto& [n, bytes] : check) {
      auto now = client_.Get(RoundKey(n, "answer-" + fid_));
      if (absl::IsUnavailable(now.status())) return now.status();
      if (now.ok() && *now == bytes) continue;
      Notice(StrCat("S3 collection round ", n, ": this frontend's answer was changed in the",
                    " bucket; written again"));
      CAIRN_RETURN_IF_ERROR(client_.Put(RoundKey(n, "answer-" + fid_), bytes));
    }
  }
  for (uint64_t n : rounds) {
    // The chunks whose place is in a condemned pack (the others this
    // frontend reads elsewhere), with that pack.
    absl::flat_hash_map<Digest, uint64_t, DigestHash> placed;
    {
      absl::MutexLock l(&mu_);
      std::vector<IndexEntry> records;
      for (uint64_t pack : condemned_[n]) {
        CAIRN_RETURN_IF_ERROR(index_->Records(pack, &records));
        for (const IndexEntry& e : records) {
          if (Loc held; index_->Find(e.digest, &held) && CondemnedLocked(held.pack)) {
            placed[e.digest] = held.pack;
          }
        }
      }
    }
    std::vector<Digest> candidates;
    for (const auto& [d, pack] : placed) candidates.push_back(d);
    std::sort(candidates.begin(), candidates.end());
    CAIRN_ASSIGN_OR_RETURN(std::vector<Digest> need, needed(candidates));
    std::string answer;
    for (const Digest& d : need) {
      auto it = placed.find(d);
      if (it == placed.end()) continue;  // not asked
      answer.append(reinterpret_cast<const char*>(d.data()), d.size());
      answer.append(reinterpret_cast<const char*>(&it->second), sizeof(it->second));
    }
    CAIRN_RETURN_IF_ERROR(client_.Put(RoundKey(n, "answer-" + fid_), answer));
    Notice(StrCat("S3 collection round ", n, " answered: ", need.size(), " of ", candidates.size(),
                  " chunks of its condemned packs still needed here"));
    absl::MutexLock l(&mu_);
    answered_[n] = Answered{answer, true};
  }
  // Alive: `cairn-node s3-frontends --forget` refuses a frontend seen lately.
  if (std::chrono::steady_clock::now() - registered_ > std::chrono::minutes(5)) {
    CAIRN_RETURN_IF_ERROR(Register());
  }
  return absl::OkStatus();
}

absl::Status S3ChunkStore::ListStored(const Digest* after, size_t max,
                                      std::vector<StoredChunk>* out) {
  out->clear();
  if (!o_.collector) return absl::OkStatus();  // the collector sweeps the bucket
  std::vector<Digest> digests;
  CAIRN_RETURN_IF_ERROR(List(after, max, &digests));
  std::map<uint64_t, int64_t> seen;  // of the packs met in this batch
  for (const Digest& d : digests) {
    absl::MutexLock l(&mu_);
    Loc loc;
    if (!index_->Find(d, &loc)) continue;
    // The first reading of the chunk's index object stands for when it was
    // stored: never earlier than it was.
    auto [it, fresh] = seen.try_emplace(loc.pack, 0);
    if (fresh) it->second = index_->Seen(loc.pack);
    out->push_back(StoredChunk{d, loc.length, it->second});
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> S3ChunkStore::Remove(const std::vector<Digest>& digests) {
  if (!o_.collector) return absl::FailedPreconditionError("only the collector frontend removes");
  absl::MutexLock l(&mu_);
  uint64_t bytes = 0;  // nominated: nothing is freed before the round ends
  for (const Digest& d : digests) {
    if (nominated_.size() >= kMaxNominated) break;  // the next pass finds the rest
    Loc loc;
    if (index_->Find(d, &loc) && nominated_.insert(d).second) bytes += loc.length;
  }
  return bytes;
}

absl::StatusOr<CompactReport> S3ChunkStore::Compact(double live_below, Cancellation* cancel) {
  CompactReport r;
  if (!o_.collector) {
    r.shared = StrCat("the chunks in s3://", o_.bucket, "/", o_.prefix,
                      " are collected by its collector frontend; this one answers its rounds");
    return r;
  }
  CAIRN_RETURN_IF_ERROR(Refresh());
  CAIRN_ASSIGN_OR_RETURN(Rounds gc, ListRounds(client_, o_.prefix));
  // Only a round this collector opened is ended by it, from its own record
  // of the packs it condemned: a list planted in the bucket deletes nothing.
  std::string mine;
  if (index_->GetMeta("g", &mine)) {
    bool closed = false;
    CAIRN_RETURN_IF_ERROR(CloseRound(mine, &r, &closed));
    if (!closed) {
      absl::MutexLock l(&mu_);
      nominated_.clear();  // found again by the pass after the round ends
      return r;
    }
  }
  for (const auto& [n, round] : gc.rounds) {
    if (round.condemned && !round.done && (mine.size() < 8 || std::memcmp(mine.data(), &n, 8))) {
      r.shared = StrCat(r.shared, r.shared.empty() ? "" : "; ", "round ", n,
                        " in the bucket was not opened by this collector (another frontend with"
                        " collector = true, or planted): it is not ended here");
    }
  }
  std::string last;
  uint64_t next = gc.rounds.empty() ? 1 : gc.rounds.rbegin()->first + 1;
  if (index_->GetMeta("G", &last) && last.size() == 8) {
    uint64_t used = 0;
    std::memcpy(&used, last.data(), 8);
    next = std::max(next, used + 1);  // never a number used before
  }
  CAIRN_RETURN_IF_ERROR(OpenRound(next, live_below, cancel, &r));
  return r;
}

absl::Status S3ChunkStore::CloseRound(const std::string& mine, CompactReport* r, bool* closed) {
  *closed = false;
  uint64_t n = 0;
  std::vector<uint64_t> ids((mine.size() - 8) / 8);
  std::memcpy(&n, mine.data(), 8);
  std::memcpy(ids.data(), mine.data() + 8, ids.size() * 8);
  CAIRN_ASSIGN_OR_RETURN(Rounds gc, ListRounds(client_, o_.prefix));
  const Round& round = gc.rounds[n];
  if (!round.condemned || round.done) {
    // Its list never reached the bucket (a crash), or someone removed it:
    // written (again); the frontends answer it from there.
    CAIRN_RETURN_IF_ERROR(client_.Delete(RoundKey(n, "done")));
    CAIRN_RETURN_IF_ERROR(client_.Put(RoundKey(n, "condemned"), FormatIds(ids)));
    r->shared =
        StrCat("collection round ", n, "'s list was missing from the bucket: written again");
    return absl::OkStatus();
  }
  std::vector<std::string> missing;
  for (const std::string& f : gc.frontends) {
    if (!round.answered.contains(f)) missing.push_back(f);
  }
  if (!missing.empty()) {
    r->shared = StrCat("collection round ", n, " waits for the answer of frontend(s) ",
                       absl::StrJoin(missing, ", "),
                       " (a running frontend answers within its [s3] answer_seconds; one stopped"
                       " for good is forgotten with cairn-node s3-frontends --forget ID)");
    return absl::OkStatus();
  }
  // Every answer counts, a forgotten frontend's too.
  absl::flat_hash_set<Digest, DigestHash> rescued;
  std::set<uint64_t> needed_packs;
  bool unreadable = false;
  for (const std::string& f : round.answered) {
    auto a = client_.Get(RoundKey(n, "answer-" + f));
    if (absl::IsUnavailable(a.status())) return a.status();
    if (!a.ok()) {
      unreadable = true;
      Notice(StrCat("S3 collection round ", n, ": the answer of frontend ", f, " cannot be read (",
                    a.status().message(), "); every pack is kept"));
      continue;
    }
    ParseAnswer(*a, &rescued, &needed_packs);
  }
  uint64_t deleted = 0, kept = 0;
  for (uint64_t id : ids) {
    auto index = client_.Get(IndexKey(id));
    if (!index.ok() && !absl::IsNotFound(index.status())) return index.status();
    std::vector<IndexEntry> entries;
    uint64_t bytes = 0;
    if (index.ok()) {
      ParseIndexObject(id, *index, kRecordHeader, &entries);
      bytes = index->size() + 8;  // the pack's trailer
    }
    const bool keep = unreadable || needed_packs.contains(id);
    for (const IndexEntry& e : entries) bytes += kRecordHeader + e.loc.length;
    if (keep) {
      ++kept;
      continue;
    }
    // The index object first: no frontend starting now finds a chunk in a
    // pack that is gone.
    CAIRN_RETURN_IF_ERROR(client_.Delete(IndexKey(id)));
    CAIRN_RETURN_IF_ERROR(client_.Delete(PackKey(id)));
    {
      absl::MutexLock l(&mu_);  // the next round's choice must not meet it
      CAIRN_RETURN_IF_ERROR(DropPackLocked(id));
    }
    ++deleted;
    r->bytes_freed += bytes;
  }
  CAIRN_RETURN_IF_ERROR(client_.Put(
      RoundKey(n, "done"), FormatDigests(std::vector<Digest>(rescued.begin(), rescued.end()))));
  CAIRN_RETURN_IF_ERROR(index_->DeleteMeta("g"));
  {
    absl::MutexLock l(&mu_);
    condemned_.erase(n);
  }
  // Earlier rounds are of no more use (this one's done list is, to the next).
  for (const auto& [m, old] : gc.rounds) {
    if (m >= n || !old.done) continue;  // an open one is someone else's
    std::vector<std::string> keys = {RoundKey(m, "condemned"), RoundKey(m, "done")};
    for (const std::string& f : old.answered) keys.push_back(RoundKey(m, "answer-" + f));
    for (const std::string& k : keys) CAIRN_RETURN_IF_ERROR(client_.Delete(k));
  }
  r->shared = StrCat("collection round ", n, " ended: ", deleted, " condemned pack(s) deleted, ",
                     kept, " kept for chunks a frontend still counts on",
                     unreadable ? " (an answer could not be read)" : "", "; ", r->bytes_freed,
                     " bytes freed");
  *closed = true;
  return absl::OkStatus();
}

absl::Status S3ChunkStore::OpenRound(uint64_t n, double live_below, Cancellation* cancel,
                                     CompactReport* r) {
  absl::flat_hash_set<Digest, DigestHash> nominated, rescued;
  {
    absl::MutexLock l(&mu_);
    nominated.swap(nominated_);
  }
  auto opened = [&](const std::string& what) {
    r->shared = r->shared.empty() ? what : StrCat(r->shared, "; ", what);
    return absl::OkStatus();
  };
  if (nominated.empty()) return opened("no garbage found for a new collection round");
  // What the last round rescued: another frontend counts on it, so it is
  // copied out of its pack like the collector's own live chunks, at the
  // first attempt after that round only (a pack of nothing else is then
  // left alone once, and condemned again at the next: kept while some
  // frontend answers for it, deleted once none does).
  CAIRN_ASSIGN_OR_RETURN(Rounds gc, ListRounds(client_, o_.prefix));
  for (auto it = gc.rounds.rbegin(); it != gc.rounds.rend(); ++it) {
    if (!it->second.done) continue;
    if (it->first == rescue_applied_) break;
    rescue_applied_ = it->first;
    auto done = client_.Get(RoundKey(it->first, "done"));
    if (done.ok()) ParseDigests(*done, &rescued);
    break;
  }
  // The packs mostly of garbage, with their live records.
  struct Picked {
    uint64_t id;
    std::vector<IndexEntry> live;
  };
  std::vector<Picked> picked;
  uint64_t garbage = 0;
  std::vector<IndexEntry> records;
  absl::Status st;
  CAIRN_RETURN_IF_ERROR(index_->Objects([&](uint64_t id, int64_t) {
    if (cancel != nullptr && cancel->cancelled()) return false;
    if (st = index_->Records(id, &records); !st.ok()) return false;
    uint64_t total = 0, live = 0;
    Picked p{id, {}};
    for (const IndexEntry& e : records) {
      total += e.loc.length;
      Loc held;
      bool placed = false;
      {
        absl::MutexLock l(&mu_);
        placed = index_->Find(e.digest, &held) && held.pack == id && held.offset == e.loc.offset;
      }
      // A copy of a chunk placed elsewhere is garbage here.
      if (!placed || (nominated.contains(e.digest) && !rescued.contains(e.digest))) continue;
      live += e.loc.length;
      p.live.push_back(e);
    }
    if (total > 0 && (live == 0 || static_cast<double>(live) < live_below * total)) {
      garbage += total - live;
      picked.push_back(std::move(p));
    }
    return picked.size() < kMaxCondemnedPacks;
  }));
  CAIRN_RETURN_IF_ERROR(st);
  if (picked.empty()) return opened("no pack is mostly garbage");
  // Condemned here first, so the copies below are stored anew.
  auto abandon = [&] {
    absl::MutexLock l(&mu_);
    condemned_.erase(n);
    opening_ = 0;
  };
  std::string used(8, '\0');
  std::memcpy(used.data(), &n, 8);
  CAIRN_RETURN_IF_ERROR(index_->PutMeta("G", used));  // never numbered again
  {
    absl::MutexLock l(&mu_);
    opening_ = n;
    for (const Picked& p : picked) condemned_[n].insert(p.id);
  }
  std::vector<uint64_t> ids;
  for (const Picked& p : picked) {
    bool copied = true;
    for (const IndexEntry& e : p.live) {
      std::string data;
      absl::Status c = ReadAt(e.digest, e.loc, &data);
      if (c.ok()) c = Put(e.digest, data, PutMode::kVerify);
      if (absl::IsUnavailable(c)) {
        abandon();
        return c;
      }
      if (!c.ok()) {  // kept: a read or a repair deals with it
        Notice(StrCat("S3 pack ", PackKey(p.id), " is not collected: ", c.message()));
        copied = false;
        break;
      }
      r->bytes_moved += data.size();
    }
    if (copied) {
      ids.push_back(p.id);
    } else {
      absl::MutexLock l(&mu_);
      condemned_[n].erase(p.id);
    }
  }
  if (absl::Status f = Flush(); !f.ok() || ids.empty()) {
    abandon();
    return f;
  }
  // Only now may a frontend read the list: every copy is in the bucket.
  // The collector's own record first: it alone says what the round deletes.
  std::string record = used;
  record.append(reinterpret_cast<const char*>(ids.data()), ids.size() * 8);
  absl::Status put = index_->PutMeta("g", record);
  if (put.ok()) put = client_.Put(RoundKey(n, "condemned"), FormatIds(ids));
  {
    absl::MutexLock l(&mu_);
    opening_ = 0;
    if (!put.ok()) condemned_.erase(n);
  }
  CAIRN_RETURN_IF_ERROR(put);
  r->packs_rewritten = ids.size();
  return opened(StrCat("collection round ", n, " opened: ", ids.size(), " pack(s) condemned (",
                       garbage, " bytes of garbage; ", r->bytes_moved,
                       " live bytes copied out); they are deleted at a later pass once every"
                       " frontend has answered"));
}

}  // namespace cairn::s3
