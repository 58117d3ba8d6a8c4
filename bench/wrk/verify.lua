-- Guards on duty scanning pass codes: `scancode_waitmsg` events with key VERIFY whose
-- ScanResult is a pass code (issue 7). Guards (prefix obguard, seeded and put on duty by
-- bench/access_seed.py) take turns; each request carries the next code from tokens.txt.
-- Expected reply: a pass (✅); against the echo server (mode=echo), its `success` echo.
--   wrk -t1 -c50 -d20s --latency -s bench/wrk/verify.lua http://127.0.0.1:PORT/wechat \
--       -- token=T users=200 prefix=obguard threads=1 tokens=/tmp/verify/tokens.txt
--
-- WeChat dedups events by sender + CreateTime, so every request of a run gets its own
-- CreateTime: run id (3 digits) * 10^6 + the thread's counter, distinct per guard.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

local st, expect, tokens, base_time
n_pass, n_other, n_non200, n_responses = 0, 0, 0, 0

setup = common.setup

function init(args)
  st = common.thread_state(args, tid)
  local path
  for _, arg in ipairs(args) do
    path = arg:match("^tokens=(.*)$") or path
  end
  assert(path, "tokens=FILE (from bench/access_seed.py) is required")
  tokens = {}
  for line in io.lines(path) do
    if #line > 0 then tokens[#tokens + 1] = line end
  end
  assert(#tokens > 0, "no pass codes in " .. path)
  if st.o.mode == "echo" then
    expect = "<Content><![CDATA[success]]></Content>"
  else
    expect = "\226\156\133" -- ✅
  end
  base_time = 1000000000 + (st.o.run % 1000) * 1000000 + tid * 100000000
end

function request()
  local n = st.counter
  st.counter = n + 1
  local openid = st.users[n % #st.users + 1]
  local code = tokens[(n * 7919 + tid) % #tokens + 1]
  local body = "<xml><ToUserName><![CDATA[gh_bench]]></ToUserName>"
    .. "<FromUserName><![CDATA[" .. openid .. "]]></FromUserName>"
    .. "<CreateTime>" .. string.format("%d", base_time + n) .. "</CreateTime>"
    .. "<MsgType><![CDATA[event]]></MsgType>"
    .. "<Event><![CDATA[scancode_waitmsg]]></Event>"
    .. "<EventKey><![CDATA[VERIFY]]></EventKey>"
    .. "<ScanCodeInfo><ScanType><![CDATA[qrcode]]></ScanType>"
    .. "<ScanResult><![CDATA[" .. code .. "]]></ScanResult></ScanCodeInfo></xml>"
  return wrk.format("POST", st.path, st.headers, body)
end

function response(status, headers, body)
  common.count(status, body, { { "pass", expect } })
end

function done(summary, latency, requests)
  common.done("verify", { "pass" }, summary, latency, requests)
end
