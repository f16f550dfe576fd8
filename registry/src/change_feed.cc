#include "change_feed.h"

#include <algorithm>

#include "cairn/status.h"
#include "cairn/strings.h"
#include "meta_schema.h"

namespace cairn {

absl::StatusOr<std::unique_ptr<ChangeFeed>> ChangeFeed::Load(MetaStore* meta, uint64_t retain) {
  std::unique_ptr<ChangeFeed> f(new ChangeFeed(meta, std::max<uint64_t>(1, retain)));
  CAIRN_ASSIGN_OR_RETURN(uint64_t head, meta::ReadCounter(meta, meta::kFeedHead, 0));
  CAIRN_ASSIGN_OR_RETURN(uint64_t tail, meta::ReadCounter(meta, meta::kFeedTail, 1));
  absl::MutexLock l(&f->mu_);
  f->head_ = head;
  f->tail_ = std::max<uint64_t>(1, tail);
  return f;
}

uint64_t ChangeFeed::head() const {
  absl::MutexLock l(&mu_);
  return head_;
}

uint64_t ChangeFeed::tail() const {
  absl::MutexLock l(&mu_);
  return tail_;
}

ChangeFeed::Append ChangeFeed::Prepare(cairn::v1::FeedEvent ev, std::vector<WriteOp>* ops) const {
  Append a;
  {
    absl::MutexLock l(&mu_);
    a.seq = head_ + 1;
    a.tail = tail_;
  }
  ev.set_seq(a.seq);
  ops->push_back(WriteOp{Table::kFeed, meta::SeqKey(a.seq), ev.SerializeAsString()});
  ops->push_back(WriteOp{Table::kState, std::string(meta::kFeedHead), StrCat(a.seq)});
  while (a.seq - a.tail + 1 > retain_) {
    ops->push_back(WriteOp{Table::kFeed, meta::SeqKey(a.tail), std::nullopt});
    ++a.tail;
  }
  ops->push_back(WriteOp{Table::kState, std::string(meta::kFeedTail), StrCat(a.tail)});
  return a;
}

void ChangeFeed::Publish(const Append& a) {
  absl::MutexLock l(&mu_);
  head_ = a.seq;
  tail_ = a.tail;
}

bool ChangeFeed::NeedsSnapshot(uint64_t after) const {
  absl::MutexLock l(&mu_);
  return after + 1 < tail_;
}

absl::Status ChangeFeed::Read(uint64_t after, uint32_t max_events,
                              const std::function<bool(cairn::v1::FeedEvent*)>& keep,
                              cairn::v1::FeedResponse* out) const {
  const uint32_t max = max_events == 0 ? 1000 : std::min<uint32_t>(max_events, 1000);
  uint64_t head;
  {
    absl::MutexLock l(&mu_);
    head = head_;
  }
  out->set_head(head);
  if (after > head) {
    return absl::OutOfRangeError(StrCat("cursor ", after, " is ahead of this node's feed head ",
                                        head, " (a different node, or one restored from backup?)"));
  }
  uint64_t next = after + 1;
  out->set_covered(after);
  while (next <= head && out->events_size() < static_cast<int>(max)) {
    auto v = meta_->Get(Table::kFeed, meta::SeqKey(next));
    if (absl::IsNotFound(v.status())) break;  // dropped by retention meanwhile
    CAIRN_RETURN_IF_ERROR(v.status());
    cairn::v1::FeedEvent* ev = out->add_events();
    if (!ev->ParseFromString(*v)) {
      return absl::DataLossError(StrCat("feed event ", next, " is corrupt"));
    }
    out->set_covered(next);
    ++next;
    if (!keep(ev)) out->mutable_events()->RemoveLast();
  }
  return absl::OkStatus();
}

uint64_t ChangeFeed::WaitPast(uint64_t after, absl::Duration timeout) const {
  struct Arg {
    const ChangeFeed* f;
    uint64_t after;
  } arg{this, after};
  absl::MutexLock l(&mu_);
  mu_.AwaitWithTimeout(
      absl::Condition(
          +[](Arg* a) ABSL_NO_THREAD_SAFETY_ANALYSIS { return a->f->head_ > a->after; }, &arg),
      timeout);
  return head_;
}

}  // namespace cairn
