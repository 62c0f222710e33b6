// A libuv loop for tests: runs until a condition holds or a generous real-time deadline
// passes (a guard, never a sleep), and on teardown lets every handle's close callback run, so
// ASan sees any handle memory that leaked.
#pragma once

#include <uv.h>

#include <functional>

namespace chorus::test {

class TestLoop {
  public:
    TestLoop() {
        uv_loop_init(&loop_);
        uv_timer_init(&loop_, &tick_);
        // Wakes the loop every 10 ms so the condition is re-checked even when nothing happens.
        uv_timer_start(
            &tick_, [](uv_timer_t*) {}, 10, 10);
    }
    ~TestLoop() {
        uv_close(reinterpret_cast<uv_handle_t*>(&tick_), nullptr);
        uv_run(&loop_, UV_RUN_DEFAULT);
        uv_loop_close(&loop_);
    }
    uv_loop_t* get() { return &loop_; }

    bool run_until(const std::function<bool()>& done, uint64_t limit_ms = 10'000) {
        uv_update_time(&loop_);
        const uint64_t start = uv_now(&loop_);
        while (!done()) {
            if (uv_now(&loop_) - start > limit_ms) return false;
            uv_run(&loop_, UV_RUN_ONCE);
        }
        return true;
    }

  private:
    uv_loop_t loop_;
    uv_timer_t tick_;
};

}  // namespace chorus::test
