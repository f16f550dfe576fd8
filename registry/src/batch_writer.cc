#include "batch_writer.h"

#include "cairn/limits.h"
#include "cairn/status.h"

namespace cairn {

BatchWriter::BatchWriter(ChunkStore* store, size_t flush_every, size_t batch_bytes,
                         size_t max_batches)
    : store_(store),
      flush_every_(flush_every),
      batch_bytes_(batch_bytes),
      max_batches_(max_batches),
      thread_([this] { Loop(); }) {}

BatchWriter::~BatchWriter() { (void)Close(); }

absl::StatusOr<char*> BatchWriter::Reserve(size_t n) {
  if (n > kMaxChunkSize) return absl::InvalidArgumentError("chunk larger than kMaxChunkSize");
  if (current_ && current_->used + n > batch_bytes_ + kMaxChunkSize) {
    CAIRN_RETURN_IF_ERROR(Send());
  }
  if (!current_) {
    absl::MutexLock l(&mu_);
    mu_.Await(absl::Condition(
        +[](BatchWriter* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(w->mu_) {
          return w->in_flight_ < w->max_batches_ || !w->error_.ok();
        },
        this));
    if (!error_.ok()) return error_;
    if (!spare_.empty()) {
      current_ = std::move(spare_.back());
      spare_.pop_back();
    } else {
      current_ = std::make_unique<Batch>();
      // new char[] leaves the bytes as they are: nothing is zeroed.
      current_->bytes.reset(new char[batch_bytes_ + kMaxChunkSize]);
    }
    current_->used = 0;
    current_->chunks.clear();
  }
  return current_->bytes.get() + current_->used;
}

absl::Status BatchWriter::Commit(const Digest& d, size_t n) {
  current_->chunks.push_back({d, current_->used, n});
  current_->used += n;
  if (current_->used >= batch_bytes_) return Send();
  return absl::OkStatus();
}

absl::Status BatchWriter::Send() {
  absl::MutexLock l(&mu_);
  if (!error_.ok()) return error_;
  queue_.push_back(std::move(current_));
  ++in_flight_;
  return absl::OkStatus();
}

absl::Status BatchWriter::Close() {
  if (current_ && !current_->chunks.empty()) (void)Send();
  current_.reset();
  {
    absl::MutexLock l(&mu_);
    closed_ = true;
  }
  if (thread_.joinable()) thread_.join();
  absl::MutexLock l(&mu_);
  if (error_.ok() && !flushed_) {
    error_ = store_->Flush();
    flushed_ = true;
  }
  return error_;
}

void BatchWriter::Loop() {
  uint64_t unflushed = 0;
  for (;;) {
    std::unique_ptr<Batch> b;
    absl::Status st;
    {
      absl::MutexLock l(&mu_);
      mu_.Await(absl::Condition(
          +[](BatchWriter* w)
               ABSL_EXCLUSIVE_LOCKS_REQUIRED(w->mu_) { return !w->queue_.empty() || w->closed_; },
          this));
      if (queue_.empty()) return;
      b = std::move(queue_.front());
      queue_.pop_front();
      st = error_;
    }
    for (const Batch::Chunk& c : b->chunks) {
      if (!st.ok()) break;
      absl::StatusOr<bool> has = store_->Has(c.digest);
      if (!has.ok()) {
        st = has.status();
        break;
      }
      if (*has) {  // an earlier (interrupted) import, or another release
        ++held_;
        continue;
      }
      ++stored_;
      bytes_stored_ += c.size;
      // Hashed by the importer a moment ago, from these very bytes.
      st = store_->Put(c.digest, std::string_view(b->bytes.get() + c.offset, c.size),
                       PutMode::kDigestComputedFromData);
      unflushed += c.size;
      if (st.ok() && unflushed >= flush_every_) {
        st = store_->Flush();
        unflushed = 0;
      }
    }
    absl::MutexLock l(&mu_);
    --in_flight_;
    if (!st.ok() && error_.ok()) error_ = st;
    if (spare_.size() < max_batches_) spare_.push_back(std::move(b));
  }
}

}  // namespace cairn
