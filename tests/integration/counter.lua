-- wrk script for rolld's integration tests: counts the answers per version_name
-- (read from the model-server's JSON body), the non-2xx answers, and the wall-clock
-- time (ms since the epoch) each version first answered. Prints one line at the end:
--   ROLLD_WRK {"requests":N,"answered":N,"non2xx":N,"errors":{...},"versions":{...},"first_ms":{...}}
-- Argument (after `--`): pause in ms before each request on a connection (0 or none:
-- as fast as possible), to keep a continuous load from taking every CPU.
local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } rolld_timespec;
int clock_gettime(int clock, rolld_timespec *ts);
]]
local timespec = ffi.new("rolld_timespec")

local function now_ms()
    ffi.C.clock_gettime(0, timespec) -- CLOCK_REALTIME
    return tonumber(timespec.tv_sec) * 1000 + math.floor(tonumber(timespec.tv_nsec) / 1000000)
end

local threads = {}

function setup(thread)
    table.insert(threads, thread)
end

function init(args)
    pause = tonumber(args[1] or "0") or 0
    answered = 0
    non2xx = 0
    counts = {}
    first = {}
end

function delay()
    return pause
end

function response(status, headers, body)
    answered = answered + 1
    if status < 200 or status > 299 then
        non2xx = non2xx + 1
    else
        local version = body and body:match('"version_name"%s*:%s*"([^"]*)"') or "(none)"
        counts[version] = (counts[version] or 0) + 1
        if first[version] == nil then
            first[version] = now_ms()
        end
    end
end

local function json_map(map)
    local keys = {}
    for k in pairs(map) do
        table.insert(keys, k)
    end
    table.sort(keys)
    local parts = {}
    for _, k in ipairs(keys) do
        table.insert(parts, string.format("%q:%d", k, map[k]))
    end
    return "{" .. table.concat(parts, ",") .. "}"
end

function done(summary, latency, requests)
    local total_answered, total_non2xx, versions, firsts = 0, 0, {}, {}
    for _, thread in ipairs(threads) do
        total_answered = total_answered + (thread:get("answered") or 0)
        total_non2xx = total_non2xx + (thread:get("non2xx") or 0)
        for version, n in pairs(thread:get("counts") or {}) do
            versions[version] = (versions[version] or 0) + n
        end
        for version, t in pairs(thread:get("first") or {}) do
            if firsts[version] == nil or t < firsts[version] then
                firsts[version] = t
            end
        end
    end
    local e = summary.errors
    io.write(string.format(
        'ROLLD_WRK {"requests":%d,"answered":%d,"non2xx":%d,"duration_us":%d,' ..
        '"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d,"status":%d},' ..
        '"versions":%s,"first_ms":%s,"p99_us":%d}\n',
        summary.requests, total_answered, total_non2xx, summary.duration,
        e.connect, e.read, e.write, e.timeout, e.status,
        json_map(versions), json_map(firsts), latency:percentile(99)))
end
