-- Issue 6: the quick check-in `打卡 36.5` from many bound users, a unique MsgId per request.
-- Each user sends at most one message per pass through the users (users are taken in turn),
-- so with more users than requests every check-in is the user's first of the day; a second
-- pass replaces the day's report. Expected reply: 健康打卡成功 (the report is recorded).
--   wrk -t1 -c50 -d20s --latency -s bench/wrk/checkin.lua http://127.0.0.1:PORT/wechat \
--       -- token=T users=20000 prefix=ochk threads=1 run=123458 [mode=echo]
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

common.one_message("checkin", "recorded", "打卡 36.5", "健康打卡成功")
