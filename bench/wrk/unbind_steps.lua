-- Scenario (b): bound users stepping through a two-step conversation, over and over:
--   step 0: `解绑` (unbind)  -> the bot asks to confirm ("确定解除与 … 的绑定吗？")
--   step 1: `no`             -> "已保留原绑定。" (the binding is kept; the conversation ends)
-- Each thread owns a slice of the users and sends rounds: round k sends step (k mod 2) to every
-- user of its slice in turn, so a user's second step goes out a whole slice of requests
-- (1,000 with -t1) after its first, long after the first was answered. The counts printed at
-- the end show whether the conversation really stepped: a lost step 0 turns the following
-- `no` into "other reply".
--   wrk -t1 -c50 -d20s --latency -s bench/wrk/unbind_steps.lua http://127.0.0.1:PORT/wechat \
--       -- token=T users=1000 prefix=obench threads=1 run=123457
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

local STEPS = { "解绑", "no" }
local st, expect_confirm, expect_kept
n_confirm, n_kept, n_other, n_non200, n_responses = 0, 0, 0, 0, 0

setup = common.setup

function init(args)
  st = common.thread_state(args, tid)
  st.step = 0
  -- wrk calls request() once on thread 0 right after init() to check the script, and never
  -- sends that request: it must not use up a step, or user 0 would skip its first 解绑.
  st.unsent = (tid == 0)
  expect_confirm = common.expectation(st, "确定解除", STEPS[1])
  expect_kept = common.expectation(st, "已保留原绑定。", STEPS[2])
end

function request()
  if st.unsent then
    st.unsent = false
    return wrk.format("POST", st.path, st.headers, "<xml/>")
  end
  local users = st.users
  local n = #users
  local round = math.floor(st.step / n)
  local openid = users[st.step % n + 1]
  st.step = st.step + 1
  return wrk.format("POST", st.path, st.headers, common.body(st, openid, STEPS[round % 2 + 1]))
end

function response(status, headers, body)
  common.count(status, body, { { "confirm", expect_confirm }, { "kept", expect_kept } })
end

function done(summary, latency, requests)
  common.done("bound-two-step", { "confirm", "kept" }, summary, latency, requests)
end
