"""The Lua that runs inside the lab's nginx: canary routing, sticky cookies and ingress-nginx metrics.

`lab.render` puts this source into ``init_by_lua_block`` after a generated ``ROUTES`` table (one entry per
location, see `lab.render` for its fields), so the whole data plane is one nginx configuration file that
``nginx -t`` checks in full. It registers the module ``songbird`` with four entry points:

- ``init_worker()``: seeds ``math.random`` per worker (ingress-nginx seeds per worker too);
- ``route()`` (rewrite phase): 503 when the main upstream has no endpoints, else the same steps as
  ``route_to_alternative_balancer`` in ingress-nginx's rootfs/etc/nginx/lua/balancer.lua: main affinity,
  canary present and with endpoints, canary affinity, header (value, pattern, always/never), cookie
  (always/never), weight drawn with ``math.random(total) <= weight`` where total is ``canary-weight-total``
  only when above 100. It sets ``$proxy_target`` (the upstream) and ``$proxy_alternative_upstream_name``
  (the canary upstream, empty for stable traffic), and a sticky cookie ``<key>|<backend key>`` when the
  chosen backend has cookie affinity and the request carries none (rootfs/etc/nginx/lua/balancer/
  sticky.lua);
- ``log()`` (log phase): counts the request and observes two histograms in ``lua_shared_dict
  songbird_metrics``, labelled like ingress-nginx's monitor.lua + socket.go: ``ingress``/``service`` are
  the location's MAIN Ingress and service even for canary traffic; ``canary`` tells them apart;
- ``metrics()`` (content phase): the Prometheus text exposition of those counters.

Shared-dict keys are ``<family>\\t<labels>[\\t<suffix>]`` with family ``r`` (requests), ``q`` (request
duration, ``$request_time``) and ``u`` (upstream response time, ``$upstream_response_time``, skipped when
not a single number, as socket.go skips -1). The dict survives graceful reloads, so counters only grow.
"""

from __future__ import annotations

ROUTER_LUA = r"""
local songbird = {}
package.loaded.songbird = songbird

local ngx = ngx
local find, sub, format = string.find, string.sub, string.format
local concat, sort = table.concat, table.sort

local BUCKETS = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
local BUCKET_LE = {"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10"}
local CONST_LABELS = 'controller_class="k8s.io/ingress-nginx",controller_namespace="ingress-nginx",'
  .. 'controller_pod="songbird-lab",'

function songbird.init_worker()
  math.randomseed(ngx.now() * 1000 + ngx.worker.pid())
end

-- "<upstream key>|<backend key>" as balancer/sticky.lua writes it; the second field only.
local function cookie_keys(name)
  local raw = ngx.var["cookie_" .. name]
  if not raw or raw == "" then
    return nil, nil
  end
  local bar = find(raw, "|", 1, true)
  if not bar then
    return raw, nil
  end
  local rest = sub(raw, bar + 1)
  local bar2 = find(rest, "|", 1, true)
  if bar2 then
    rest = sub(rest, 1, bar2 - 1)
  end
  return sub(raw, 1, bar - 1), rest
end

local function to_canary(r)
  if r.affinity then
    local _, key = cookie_keys(r.affinity.cookie)
    if key == r.main_key then
      return false
    end
  end
  local c = r.canary
  if not c then
    return false
  end
  if c.endpoints == 0 then
    ngx.log(ngx.ERR, "no alternative balancer for backend: ", c.upstream)
    return false
  end
  if c.affinity then
    local _, key = cookie_keys(c.affinity.cookie)
    if key == c.key then
      return true
    end
  end
  if c.header_var then
    local header = ngx.var[c.header_var]
    if header then
      if c.header_value ~= "" then
        if header == c.header_value then
          return true
        end
      elseif c.header_pattern ~= "" then
        local m, err = ngx.re.match(header, c.header_pattern)
        if m then
          return true
        elseif err then
          ngx.log(ngx.ERR, "error when matching canary-by-header-pattern: '", c.header_pattern, "': ", err)
          return false
        end
      elseif header == "always" then
        return true
      elseif header == "never" then
        return false
      end
    end
  end
  if c.cookie_var then
    local cookie = ngx.var[c.cookie_var]
    if cookie == "always" then
      return true
    elseif cookie == "never" then
      return false
    end
  end
  return math.random(c.total) <= c.weight
end

function songbird.route()
  local r = ROUTES[tonumber(ngx.var.songbird_route)]
  ngx.ctx.songbird_route = r
  if r.main_endpoints == 0 then
    return ngx.exit(ngx.HTTP_SERVICE_UNAVAILABLE)
  end
  local upstream, affinity, key = r.main, r.affinity, r.main_key
  if to_canary(r) then
    local c = r.canary
    ngx.var.proxy_alternative_upstream_name = c.upstream
    upstream, affinity, key = c.upstream, c.affinity, c.key
  end
  ngx.var.proxy_target = upstream
  if affinity and not cookie_keys(affinity.cookie) then
    local value = ngx.md5(format("%s.%s.%s", ngx.now(), ngx.worker.pid(), math.random(999999)))
    ngx.header["Set-Cookie"] = affinity.cookie .. "=" .. value .. "|" .. key
      .. "; Path=" .. (affinity.path or r.path) .. "; HttpOnly"
  end
end

local function escape(value)
  value = value:gsub("\\", "\\\\")
  value = value:gsub('"', '\\"')
  value = value:gsub("\n", "\\n")
  return value
end

local function observe(dict, family, labels, seconds)
  if not seconds then
    return
  end
  local base = family .. "\t" .. labels .. "\t"
  for i, le in ipairs(BUCKETS) do
    dict:incr(base .. format("%02d", i), seconds <= le and 1 or 0, 0)
  end
  dict:incr(base .. "inf", 1, 0)
  dict:incr(base .. "sum", seconds, 0)
  dict:incr(base .. "count", 1, 0)
end

function songbird.log()
  local r = ngx.ctx.songbird_route
  if not r then
    return
  end
  local labels = concat({
    'canary="', escape(ngx.var.proxy_alternative_upstream_name or ""), '",',
    'host="', escape(ngx.var.host or ""), '",',
    r.static_labels, ',',
    'method="', escape(ngx.var.request_method or ""), '",',
    'status="', escape(ngx.var.status or ""), '"',
  })
  local dict = ngx.shared.songbird_metrics
  local ok, err = dict:incr("r\t" .. labels, 1, 0)
  if not ok then
    ngx.log(ngx.ERR, "songbird metrics: ", err)
    return
  end
  observe(dict, "q", labels, tonumber(ngx.var.request_time))
  observe(dict, "u", labels, tonumber(ngx.var.upstream_response_time))
end

local FAMILIES = {
  {key = "q", name = "nginx_ingress_controller_request_duration_seconds",
   help = "The request processing time in milliseconds"},
  {key = "u", name = "nginx_ingress_controller_response_duration_seconds",
   help = "The time spent on receiving the response from the upstream server"},
}

local function number(v)
  return format("%.12g", v)
end

function songbird.metrics()
  local dict = ngx.shared.songbird_metrics
  local keys = dict:get_keys(0)
  sort(keys)
  local out = {
    "# HELP nginx_ingress_controller_requests The total number of client requests",
    "# TYPE nginx_ingress_controller_requests counter",
  }
  for _, k in ipairs(keys) do
    if sub(k, 1, 2) == "r\t" then
      local v = dict:get(k)
      if v then
        out[#out + 1] = "nginx_ingress_controller_requests{" .. CONST_LABELS .. sub(k, 3) .. "} " .. number(v)
      end
    end
  end
  for _, family in ipairs(FAMILIES) do
    out[#out + 1] = "# HELP " .. family.name .. " " .. family.help
    out[#out + 1] = "# TYPE " .. family.name .. " histogram"
    local prefix = family.key .. "\t"
    for _, k in ipairs(keys) do
      if sub(k, 1, 2) == prefix and sub(k, -6) == "\tcount" then
        local labels = sub(k, 3, -7)
        local base = prefix .. labels .. "\t"
        local lbl = CONST_LABELS .. labels
        for i, le in ipairs(BUCKET_LE) do
          out[#out + 1] = family.name .. "_bucket{" .. lbl .. ',le="' .. le .. '"} '
            .. number(dict:get(base .. format("%02d", i)) or 0)
        end
        out[#out + 1] = family.name .. "_bucket{" .. lbl .. ',le="+Inf"} '
          .. number(dict:get(base .. "inf") or 0)
        out[#out + 1] = family.name .. "_sum{" .. lbl .. "} " .. number(dict:get(base .. "sum") or 0)
        out[#out + 1] = family.name .. "_count{" .. lbl .. "} " .. number(dict:get(k) or 0)
      end
    end
  end
  ngx.header["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8"
  ngx.print(concat(out, "\n"), "\n")
end
"""
