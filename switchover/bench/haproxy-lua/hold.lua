-- The alternative to ferry's own hand-off proxy that switchover/README.md weighs:
-- HAProxy with a Lua action that holds new requests during a switch-over.
--   echo "ferry hold" | socat - UNIX:admin.sock      new requests wait (polling every 10 ms)
--   echo "ferry release" | socat - UNIX:admin.sock   they continue to whatever server is ready
--   echo "ferry waiting" | socat - UNIX:admin.sock   how many wait now
-- A held request waits at most 10 s, then continues (and fails if nothing is ready).
-- Used by ferry_proxy_bench --compare-haproxy-lua; not shipped as a driver.
local held = false
local waiting = 0
core.register_cli({"ferry", "hold"}, "hold new requests", function() held = true end)
core.register_cli({"ferry", "release"}, "release held requests", function() held = false end)
core.register_cli({"ferry", "waiting"}, "requests held now", function(applet)
  applet:send(tostring(waiting) .. "\n")
end)
core.register_action("ferry_hold", {"http-req", "tcp-req"}, function(txn)
  if not held then return end
  waiting = waiting + 1
  local t = 0
  while held and t < 10000 do
    core.msleep(10)
    t = t + 10
  end
  waiting = waiting - 1
end)
