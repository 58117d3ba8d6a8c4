-- Shared by the wrk scripts in this directory: argument parsing, SHA-1 (for the callback
-- signature, computed once per run), the signed URL, message bodies, per-thread counters
-- and the report printed by done().
--
-- Arguments (after `--` on the wrk command line), all key=value:
--   token=T      WeChat token (default: $HEALTHBOT_WECHAT_TOKEN)
--   users=1000   distinct openids          prefix=obench   openid = prefix .. %06d
--   threads=1    must equal wrk -t (each thread owns users u with u % threads == tid)
--   run=N        6-digit run id (100000..999999), the high digits of every MsgId
--   ts=SECONDS   timestamp to sign (default: os.time(); must be within 5 min of the server)
--   mode=bot|echo  what reply to expect: the bot's text, or our own content echoed back

local bit = require("bit")
local band, bor, bxor, bnot = bit.band, bit.bor, bit.bxor, bit.bnot
local rol, tobit, lshift = bit.rol, bit.tobit, bit.lshift

local M = {}

-- SHA-1 (FIPS 180-4) on LuaJIT's 32-bit bit ops; inputs here are a few dozen bytes.
function M.sha1(msg)
  local h0, h1, h2, h3, h4 =
    tobit(0x67452301), tobit(0xEFCDAB89), tobit(0x98BADCFE), tobit(0x10325476), tobit(0xC3D2E1F0)
  local bits = #msg * 8
  msg = msg .. "\128" .. string.rep("\0", (55 - #msg) % 64)
    .. string.rep("\0", 4)  -- high 32 bits of the length (messages < 512 MiB)
    .. string.char(band(bit.rshift(bits, 24), 255), band(bit.rshift(bits, 16), 255),
                   band(bit.rshift(bits, 8), 255), band(bits, 255))
  local w = {}
  for chunk = 1, #msg, 64 do
    for i = 0, 15 do
      local a, b, c, d = msg:byte(chunk + i * 4, chunk + i * 4 + 3)
      w[i] = bor(lshift(a, 24), lshift(b, 16), lshift(c, 8), d)
    end
    for i = 16, 79 do
      w[i] = rol(bxor(w[i - 3], w[i - 8], w[i - 14], w[i - 16]), 1)
    end
    local a, b, c, d, e = h0, h1, h2, h3, h4
    for i = 0, 79 do
      local f, k
      if i < 20 then
        f, k = bor(band(b, c), band(bnot(b), d)), 0x5A827999
      elseif i < 40 then
        f, k = bxor(b, c, d), 0x6ED9EBA1
      elseif i < 60 then
        f, k = bor(band(b, c), band(b, d), band(c, d)), 0x8F1BBCDC
      else
        f, k = bxor(b, c, d), 0xCA62C1D6
      end
      local temp = tobit(rol(a, 5) + f + e + k + w[i])
      e, d, c, b, a = d, c, rol(b, 30), a, temp
    end
    h0, h1, h2, h3, h4 = tobit(h0 + a), tobit(h1 + b), tobit(h2 + c), tobit(h3 + d), tobit(h4 + e)
  end
  return bit.tohex(h0, 8) .. bit.tohex(h1, 8) .. bit.tohex(h2, 8) .. bit.tohex(h3, 8)
    .. bit.tohex(h4, 8)
end

-- Plain-mode signature: sha1 of the sorted concatenation of token, timestamp, nonce.
function M.signature(token, timestamp, nonce)
  local parts = { token, timestamp, nonce }
  table.sort(parts)
  return M.sha1(table.concat(parts))
end

assert(M.signature("spamtest", "1409735669", "1320562132")
       == "16120ec1b8dbb870f510d87ce6bc2463eae6ca1a", "sha1 self-test failed")

function M.parse_args(args)
  local o = {
    token = os.getenv("HEALTHBOT_WECHAT_TOKEN"),
    users = 1000, prefix = "obench", threads = 1,
    run = 100000 + os.time() % 900000, ts = os.time(), mode = "bot",
  }
  for _, arg in ipairs(args or {}) do
    local k, v = arg:match("^([%w_]+)=(.*)$")
    assert(k, "arguments are key=value, got " .. tostring(arg))
    o[k] = v
  end
  assert(o.token and o.token ~= "", "token=... (or HEALTHBOT_WECHAT_TOKEN) is required")
  o.users, o.threads, o.run, o.ts = tonumber(o.users), tonumber(o.threads), tonumber(o.run),
    tonumber(o.ts)
  assert(o.run >= 100000 and o.run <= 999999, "run must have 6 digits")
  return o
end

function M.openid(prefix, u)
  return prefix .. string.format("%06d", u)
end

-- Everything a thread needs: its slice of users, the signed path, and a body builder.
function M.thread_state(args, tid)
  local o = M.parse_args(args)
  local st = { o = o, tid = tid, counter = 0, users = {} }
  for u = 0, o.users - 1 do
    if u % o.threads == tid then st.users[#st.users + 1] = M.openid(o.prefix, u) end
  end
  assert(#st.users > 0, "thread " .. tid .. " owns no users")
  local timestamp = string.format("%d", o.ts)
  local nonce = string.format("%d", 1000000 + tid * 7919 + o.run % 1000)
  -- The signature does not cover the body: one signed path serves the whole run.
  st.path = wrk.path .. "?signature=" .. M.signature(o.token, timestamp, nonce)
    .. "&timestamp=" .. timestamp .. "&nonce=" .. nonce
  st.timestamp = timestamp
  st.headers = { ["Content-Type"] = "text/xml; charset=utf-8" }
  return st
end

-- One text message; the MsgId is run (6 digits) .. thread (2) .. per-thread counter (10),
-- 18 digits in all, so it is unique across threads, runs and wrk invocations.
function M.body(st, openid, content)
  local msgid = string.format("%06d%02d%010d", st.o.run, st.tid, st.counter)
  st.counter = st.counter + 1
  return "<xml><ToUserName><![CDATA[gh_bench]]></ToUserName>"
    .. "<FromUserName><![CDATA[" .. openid .. "]]></FromUserName>"
    .. "<CreateTime>" .. st.timestamp .. "</CreateTime>"
    .. "<MsgType><![CDATA[text]]></MsgType>"
    .. "<Content><![CDATA[" .. content .. "]]></Content>"
    .. "<MsgId>" .. msgid .. "</MsgId></xml>"
end

-- What a correct reply contains: the bot's text, or (echo server) our own content.
function M.expectation(st, bot_text, sent_content)
  if st.o.mode == "echo" then
    return "<Content><![CDATA[" .. sent_content .. "]]></Content>"
  end
  return bot_text
end

-- Counts one response into this thread's globals (read back by M.done): the first label in
-- `expected` (label → text) whose text the body contains, else "other" or "non200".
function M.count(status, body, expected)
  n_responses = (n_responses or 0) + 1
  if status ~= 200 then
    n_non200 = (n_non200 or 0) + 1
    sample_other = sample_other or (status .. " " .. body:sub(1, 2000))
    return
  end
  for _, pair in ipairs(expected) do
    if body:find(pair[2], 1, true) then
      _G["n_" .. pair[1]] = (_G["n_" .. pair[1]] or 0) + 1
      return
    end
  end
  n_other = (n_other or 0) + 1
  sample_other = sample_other or (status .. " " .. body:sub(1, 2000))
end

-- A scenario where every request is one text message from the next user in turn: installs
-- wrk's setup/init/request/response/done for it.
function M.one_message(scenario, label, content, bot_text)
  local st, expected
  setup = M.setup
  function init(args)
    st = M.thread_state(args, tid)
    expected = { { label, M.expectation(st, bot_text, content) } }
  end
  function request()
    local users = st.users
    local openid = users[st.counter % #users + 1]
    return wrk.format("POST", st.path, st.headers, M.body(st, openid, content))
  end
  function response(status, headers, body)
    M.count(status, body, expected)
  end
  function done(summary, latency, requests)
    M.done(scenario, { label }, summary, latency, requests)
  end
end

-- setup()/done() run in wrk's main Lua state; they collect the per-thread counters.
local threads = {}

function M.setup(thread)
  thread:set("tid", #threads)
  threads[#threads + 1] = thread
end

local function json_escape(s)
  return (s:gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end))
end

-- Prints the counters and one machine-readable line (BENCH_JSON) for the runner.
function M.done(scenario, labels, summary, latency, requests)
  local totals, responses = {}, 0
  for _, name in ipairs(labels) do totals[name] = 0 end
  totals.other, totals.non200 = 0, 0
  for _, t in ipairs(threads) do
    for name in pairs(totals) do totals[name] = totals[name] + (t:get("n_" .. name) or 0) end
    responses = responses + (t:get("n_responses") or 0)
  end
  local sample
  for _, t in ipairs(threads) do sample = sample or t:get("sample_other") end
  local matched = 0
  for _, name in ipairs(labels) do matched = matched + totals[name] end
  local secs = summary.duration / 1e6
  io.write(string.format("\n%s: %d responses, %.1f%% with the expected reply\n", scenario,
    responses, responses > 0 and 100 * matched / responses or 0))
  for _, name in ipairs(labels) do
    io.write(string.format("  %-28s %8d\n", name, totals[name]))
  end
  io.write(string.format("  %-28s %8d\n  %-28s %8d\n", "other reply", totals.other,
    "non-200", totals.non200))
  if sample then io.write("  first unexpected reply: " .. sample:gsub("\n", " ") .. "\n") end
  local e = summary.errors
  local parts = {
    string.format('"scenario":"%s"', json_escape(scenario)),
    string.format('"requests":%d', summary.requests),
    string.format('"duration_s":%.3f', secs),
    string.format('"rps":%.1f', summary.requests / secs),
    string.format('"p50_ms":%.3f', latency:percentile(50) / 1000),
    string.format('"p90_ms":%.3f', latency:percentile(90) / 1000),
    string.format('"p99_ms":%.3f', latency:percentile(99) / 1000),
    string.format('"max_ms":%.3f', latency.max / 1000),
    string.format('"responses":%d', responses),
    string.format('"matched":%d', matched),
    string.format('"other":%d', totals.other),
    string.format('"non200":%d', totals.non200),
    string.format('"socket_errors":%d', e.connect + e.read + e.write + e.timeout),
    string.format('"timeouts":%d', e.timeout),
  }
  for _, name in ipairs(labels) do
    parts[#parts + 1] = string.format('"n_%s":%d', name, totals[name])
  end
  io.write("BENCH_JSON {" .. table.concat(parts, ",") .. "}\n")
end

return M
