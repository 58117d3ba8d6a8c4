-- Scenario (a): `帮助` (help) from 1,000 distinct openids, a unique MsgId per request.
-- Expected reply: the help list, which starts with 你可以发送 ("You can send:").
--   wrk -t1 -c50 -d20s --latency -s bench/wrk/help.lua http://127.0.0.1:PORT/wechat \
--       -- token=T users=1000 prefix=ohelp threads=1 run=123456
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

common.one_message("help", "help", "帮助", "你可以发送")
