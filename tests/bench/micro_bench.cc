// Google Benchmark micro-benchmarks of the hot paths, one core, in memory:
// FastCDC cut-point search, SHA-256 (OpenSSL EVP), CRC-32C, chunk + hash, and a pack
// store Put. Run: build/tests/bench/micro_bench (bytes/s are per core).
#include <benchmark/benchmark.h>

#include "cairn/chunker.h"
#include "cairn/crc32c.h"
#include "cairn/hash.h"
#include "cairn/store.h"
#include "testing.h"

namespace {

const std::string& Data() {
  static const std::string d = cairn::testing::RandomBytes(64 << 20, 42);
  return d;
}

void BM_FastCdcCut(benchmark::State& state) {
  cairn::FastCdc cdc(cairn::ChunkerParams::ForAverage(static_cast<uint32_t>(state.range(0))));
  const auto* p = reinterpret_cast<const uint8_t*>(Data().data());
  const size_t n = Data().size();
  for (auto _ : state) {
    size_t pos = 0, chunks = 0;
    while (pos < n) {
      pos += cdc.Cut(p + pos, n - pos);
      ++chunks;
    }
    benchmark::DoNotOptimize(chunks);
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * n);
}
BENCHMARK(BM_FastCdcCut)->Arg(16 << 10)->Arg(32 << 10)->Arg(64 << 10)->Arg(128 << 10);

// A whole-buffer function over the data in blocks of state.range(0) bytes.
template <auto kFn>
void BlockwiseBench(benchmark::State& state) {
  const size_t block = state.range(0);
  for (auto _ : state) {
    for (size_t off = 0; off + block <= Data().size(); off += block) {
      benchmark::DoNotOptimize(kFn(Data().data() + off, block));
    }
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * (Data().size() / block * block));
}
cairn::Digest Sha256Block(const char* p, size_t n) { return cairn::Sha256Of(p, n); }
uint32_t Crc32cBlock(const char* p, size_t n) { return cairn::Crc32c(p, n); }
void BM_Sha256(benchmark::State& state) { BlockwiseBench<Sha256Block>(state); }
BENCHMARK(BM_Sha256)->Arg(64 << 10)->Arg(1 << 20);
// The check the gateway makes of each chunk it sends (cairn/crc32c.h).
void BM_Crc32c(benchmark::State& state) { BlockwiseBench<Crc32cBlock>(state); }
BENCHMARK(BM_Crc32c)->Arg(64 << 10)->Arg(1 << 20);

void BM_ChunkAndHash(benchmark::State& state) {
  cairn::FastCdc cdc(cairn::ChunkerParams{});
  const auto* p = reinterpret_cast<const uint8_t*>(Data().data());
  const size_t n = Data().size();
  for (auto _ : state) {
    size_t pos = 0;
    while (pos < n) {
      size_t k = cdc.Cut(p + pos, n - pos);
      benchmark::DoNotOptimize(cairn::Sha256Of(p + pos, k));
      pos += k;
    }
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * n);
}
BENCHMARK(BM_ChunkAndHash);

// Chunk + hash + Put into a pack store on tmpfs-like storage ($TMPDIR), no sync.
void BM_ChunkHashPackPut(benchmark::State& state) {
  cairn::testing::TempDir dir;
  cairn::FastCdc cdc(cairn::ChunkerParams{});
  const auto* p = reinterpret_cast<const uint8_t*>(Data().data());
  const size_t n = Data().size();
  int round = 0;
  for (auto _ : state) {
    state.PauseTiming();
    auto store = std::move(cairn::OpenPackChunkStore(dir / std::to_string(round++), {})).value();
    state.ResumeTiming();
    size_t pos = 0;
    while (pos < n) {
      size_t k = cdc.Cut(p + pos, n - pos);
      std::string_view bytes(Data().data() + pos, k);
      benchmark::DoNotOptimize(
          store->Put(cairn::Sha256Of(bytes), bytes, cairn::PutMode::kDigestComputedFromData));
      pos += k;
    }
    state.PauseTiming();
    store.reset();
    state.ResumeTiming();
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * n);
}
BENCHMARK(BM_ChunkHashPackPut)->Iterations(3)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
