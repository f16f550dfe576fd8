// A fixed set of threads for the node's blocking work (disk reads and writes,
// hashing, fdatasync), so gRPC's callback threads never block. Thread-safe.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace cairn::node {

class WorkPool {
 public:
  // Starts `threads` workers; at most `max_queue` tasks wait.
  WorkPool(int threads, size_t max_queue);
  // Runs every queued task, then joins the workers.
  ~WorkPool();
  WorkPool(const WorkPool&) = delete;
  WorkPool& operator=(const WorkPool&) = delete;

  // Queues `fn`. Returns false (and drops it) when the queue is full: the
  // caller answers RESOURCE_EXHAUSTED so the client backs off.
  bool TrySubmit(std::function<void()> fn);

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;  // guarded by mu_
  bool stop_ = false;                        // guarded by mu_
  const size_t max_queue_;
  std::vector<std::thread> threads_;
};

}  // namespace cairn::node
