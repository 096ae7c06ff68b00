// memlens: the rendering of the memory profiler's reports (internal): one self-contained HTML
// page (summary, memory timeline, tables, icicle flame graphs of live memory by call stack and
// of the difference between two snapshots) and the timeline alone as SVG. It knows nothing of
// the profiler: the profiler fills the plain structs below and calls write_html() or
// timeline_svg().
//
// The page works offline and references nothing outside itself: CSS, script and SVG are inline,
// fonts are the system's, and the flame graph's data is one JSON block in which every frame is
// stored once. It stays small whatever the capture: the timeline is downsampled and the flame
// graph keeps the largest stacks (build_flame's limits), folding the rest into "other".
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "memlens/detail/files.hpp"
#include "memlens/tracemalloc.hpp"

namespace memlens::detail::report {

// ---------------------------------------------------------------------------------------------
// What a report shows

/// One sample of the memory timeline.
struct Point {
  double elapsed_ms = 0;             ///< since the profiler started
  std::uint64_t traced_current = 0;  ///< tracemalloc's current traced bytes
  std::uint64_t traced_peak = 0;     ///< tracemalloc's peak traced bytes
  std::uint64_t rss = 0;             ///< resident set size in bytes; 0 when unknown
};

/// A vertical line on the timeline: a snapshot taken at `elapsed_ms`, named `label`.
struct Marker {
  double elapsed_ms = 0;
  std::string label;
};

/// A table cell: `text` as shown; a column sorts by `sort_key` when every cell of the column has
/// one (NaN, the default, means none: the column sorts by text, and is left-aligned).
struct Cell {
  std::string text;
  double sort_key = std::numeric_limits<double>::quiet_NaN();
};

/// A table the reader sorts by clicking a header (ascending, then descending; numeric columns
/// start largest first). A row shorter than `columns` is padded with empty cells.
struct Table {
  std::vector<std::string> columns;
  std::vector<std::vector<Cell>> rows;
};

/**
 * One part of the page, rendered in the order given. `id` is the element's id (stable, for
 * links and checks: the profiler uses "top-sites", "growth", "leaks", "cycles", "suggestions";
 * "summary", "timeline", "flamegraph" and "flamegraph-diff" are the page's own). `intro` is a
 * paragraph above the table; `details` are preformatted blocks below it (retaining paths, cycle
 * descriptions); `empty_text` is shown instead of the table when it has no rows.
 */
struct Section {
  std::string id;
  std::string title;
  std::string intro;
  Table table;
  std::vector<std::string> details;
  std::string empty_text;
};

/// A frame of the flame graph, stored once in Flame::frames however many stacks use it.
struct FlameFrame {
  std::string function;
  std::string file;
  int line = 0;
};

/// Live memory allocated from one stack (an index into Flame::stacks) in one snapshot.
struct FlameSample {
  std::uint32_t stack = 0;
  std::uint64_t bytes = 0;
  std::uint64_t count = 0;
};

/// One snapshot of the flame graph: the stacks kept, each with what it holds, and "other", what
/// the stacks that were not kept hold together. The snapshot's total is the sum of both.
struct FlameSnapshot {
  std::string label;
  std::vector<FlameSample> samples;  ///< largest first
  std::uint64_t other_bytes = 0;
  std::uint64_t other_count = 0;  ///< allocations in the folded stacks
  std::size_t other_stacks = 0;   ///< how many stacks were folded into "other"
};

/// The flame graphs' data: frames and stacks interned once for every snapshot.
struct Flame {
  std::vector<FlameFrame> frames;
  /// Each stack as indices into `frames`, root (outermost caller) first.
  std::vector<std::vector<std::uint32_t>> stacks;
  std::vector<FlameSnapshot> snapshots;
};

/// A whole report page.
struct Document {
  std::string title;
  /// Label and value, in order: duration, peak, current, allocations, program...
  std::vector<std::pair<std::string, std::string>> summary;
  std::vector<Point> timeline;  ///< any length: downsampled when rendered
  std::vector<Marker> markers;  ///< snapshots on the timeline
  std::vector<Section> sections;
  Flame flame;
  /// The index in flame.snapshots shown first (the peak's snapshot, or the last).
  std::size_t flame_default = 0;
};

// ---------------------------------------------------------------------------------------------
// Escaping

namespace text {

/// The length of the valid UTF-8 sequence at `s[i]`, or 0 if the bytes there are not one (bad
/// lead byte, missing or bad continuation, overlong form, surrogate, beyond U+10FFFF).
inline std::size_t utf8_sequence(std::string_view s, std::size_t i) noexcept {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = byte(i);
  if (c < 0x80) return 1;
  std::size_t n;
  std::uint32_t cp;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
    cp = c & 0x1Fu;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    cp = c & 0x0Fu;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    cp = c & 0x07u;
  } else {
    return 0;
  }
  if (s.size() - i < n) return 0;
  for (std::size_t k = 1; k < n; ++k) {
    if ((byte(i + k) & 0xC0u) != 0x80u) return 0;
    cp = (cp << 6) | (byte(i + k) & 0x3Fu);
  }
  if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
      (cp >= 0xD800 && cp <= 0xDFFF)) {
    return 0;
  }
  return n;
}

inline constexpr std::string_view replacement = "\xEF\xBF\xBD";  // U+FFFD

}  // namespace text

/**
 * `s` as text or an attribute value of HTML or XML: `& < > " '` as entities; bytes that are not
 * valid UTF-8 and control characters XML forbids (all but tab, newline, return) as U+FFFD, so
 * that any function or file name makes a well-formed document.
 */
inline std::string html_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size() + s.size() / 8);
  for (std::size_t i = 0; i < s.size();) {
    const char c = s[i];
    const std::size_t n = text::utf8_sequence(s, i);
    if (n == 0) {
      out += text::replacement;
      ++i;
      continue;
    }
    if (n > 1) {
      out.append(s, i, n);
      i += n;
      continue;
    }
    ++i;
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n' && c != '\r') {
          out += text::replacement;
        } else {
          out += c;
        }
    }
  }
  return out;
}

/**
 * `s` as the inside of a JSON string that can sit anywhere in an HTML page, a <script> block
 * included: `"` and `\` escaped, control characters as \uXXXX, and `< > &` and U+2028/U+2029 as
 * \uXXXX too, so that no `</script>` or `<!--` can appear; bytes that are not valid UTF-8 become
 * U+FFFD.
 */
inline std::string json_escape(std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(s.size() + 8);
  auto unicode = [&](unsigned code) {
    out += "\\u";
    for (int shift = 12; shift >= 0; shift -= 4) out += hex[(code >> shift) & 0xFu];
  };
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = text::utf8_sequence(s, i);
    if (n == 0) {
      unicode(0xFFFD);
      ++i;
      continue;
    }
    if (n > 1) {
      // E2 80 A8 and E2 80 A9: U+2028 and U+2029, line terminators to older JavaScript.
      if (n == 3 && s[i] == '\xE2' && s[i + 1] == '\x80' &&
          (s[i + 2] == '\xA8' || s[i + 2] == '\xA9')) {
        unicode(s[i + 2] == '\xA8' ? 0x2028u : 0x2029u);
      } else {
        out.append(s, i, n);
      }
      i += n;
      continue;
    }
    const char c = s[i++];
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '<':
      case '>':
      case '&':
        unicode(static_cast<unsigned char>(c));
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          unicode(static_cast<unsigned char>(c));
        } else {
          out += c;
        }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Timeline

/**
 * At most `max_points` points of `points` for drawing: the first and the last as they are, and
 * between them one point per bucket of consecutive samples holding each series' maximum in the
 * bucket (at the time of its traced_current maximum), so that no spike disappears. Returns
 * `points` unchanged when it is short enough.
 */
inline std::vector<Point> downsample(const std::vector<Point>& points,
                                     std::size_t max_points = 2000) {
  if (points.size() <= max_points) return points;
  if (max_points == 0) return {};
  if (max_points == 1) return {points.back()};
  if (max_points == 2) return {points.front(), points.back()};
  std::vector<Point> out;
  out.reserve(max_points);
  out.push_back(points.front());
  const std::size_t inner = points.size() - 2;  // points[1 .. size-2]
  const std::size_t buckets = max_points - 2;
  for (std::size_t b = 0; b < buckets; ++b) {
    const std::size_t first = 1 + b * inner / buckets;
    const std::size_t last = 1 + (b + 1) * inner / buckets;  // exclusive
    if (first == last) continue;
    Point p = points[first];
    for (std::size_t i = first + 1; i < last; ++i) {
      const Point& q = points[i];
      if (q.traced_current > p.traced_current) {
        p.traced_current = q.traced_current;
        p.elapsed_ms = q.elapsed_ms;
      }
      p.traced_peak = std::max(p.traced_peak, q.traced_peak);
      p.rss = std::max(p.rss, q.rss);
    }
    out.push_back(p);
  }
  out.push_back(points.back());
  return out;
}

namespace svg {

inline std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

/// A byte count for an axis: tracemalloc's human units, "20 MiB" rather than "20.0 MiB".
inline std::string size_label(double bytes) {
  std::string s = tracemalloc::detail::format_size(bytes, false);
  if (const auto dot = s.find(".0 "); dot != std::string::npos) s.erase(dot, 2);
  return s;
}

/// A duration for an axis: "250 ms", "1.5 s", "2 min".
inline std::string time_label(double ms) {
  char buf[32];
  if (ms < 1000) {
    std::snprintf(buf, sizeof buf, "%g ms", ms);
  } else if (ms < 120000) {
    std::snprintf(buf, sizeof buf, "%g s", ms / 1000);
  } else {
    std::snprintf(buf, sizeof buf, "%g min", ms / 60000);
  }
  return buf;
}

/// A tick step for bytes up to `max`: 1, 2 or 5 times a power of ten of KiB, MiB... (or of
/// bytes), about `ticks` steps.
inline double byte_step(double max, int ticks) {
  const double raw = max / ticks;
  double unit = 1;
  while (unit * 1024 <= raw) unit *= 1024;
  double r = raw / unit;
  double mult = 1;
  while (mult * 10 < r) mult *= 10;
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    if (m * mult >= r) return m * mult * unit;
  }
  return 10 * mult * unit;
}

/// The unit of a time axis that spans `range` milliseconds: its length in ms and its name.
struct TimeUnit {
  double ms;
  const char* name;
};

inline TimeUnit time_unit(double range) {
  if (range < 2000) return {1, "ms"};
  if (range < 180000) return {1000, "s"};
  if (range < 3 * 3600000.0) return {60000, "min"};
  return {3600000, "h"};
}

/// A time for an axis in `unit`: "250 ms", "1.5 s", "20 min".
inline std::string time_label(double ms, TimeUnit unit) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g %s", ms / unit.ms, unit.name);
  return buf;
}

/// A tick step in milliseconds for about `ticks` steps over `range`: 1, 2 or 5 times a power
/// of ten of `unit`.
inline double time_step(double range, int ticks, TimeUnit unit) {
  const double raw = range / ticks / unit.ms;
  const double mult = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0}) {
    if (m * mult >= raw) return m * mult * unit.ms;
  }
  return 10 * mult * unit.ms;
}

}  // namespace svg

/**
 * The memory timeline as one standalone SVG document (it starts with `<svg xmlns=...>`, and is
 * also valid inline in HTML): traced current, traced peak and RSS (when known) over time, axes
 * in human units, and one dashed vertical line per marker with its label. The samples are
 * downsampled to at most 2000 points; samples and markers without a finite time are left out.
 */
inline std::string timeline_svg(const std::vector<Point>& all_points,
                                const std::vector<Marker>& all_markers, int width = 1100,
                                int height = 360) {
  // A sample or marker without a finite time has no place on the axis.
  std::vector<Point> points;
  points.reserve(all_points.size());
  for (const Point& p : all_points) {
    if (std::isfinite(p.elapsed_ms)) points.push_back(p);
  }
  std::vector<Marker> markers;
  for (const Marker& m : all_markers) {
    if (std::isfinite(m.elapsed_ms)) markers.push_back(m);
  }
  using svg::number;
  width = std::max(width, 200);
  height = std::max(height, 160);
  const std::vector<Point> shown = downsample(points, 2000);
  // Plot area.
  const double left = 72, right = 24, top = 58, bottom = 56;
  const double plot_w = width - left - right, plot_h = height - top - bottom;

  double t0 = shown.empty() ? 0 : shown.front().elapsed_ms;
  double t1 = t0;
  double ymax = 0;
  bool have_rss = false;
  for (const Point& p : shown) {
    t0 = std::min(t0, p.elapsed_ms);
    t1 = std::max(t1, p.elapsed_ms);
    ymax = std::max({ymax, static_cast<double>(p.traced_current),
                     static_cast<double>(p.traced_peak), static_cast<double>(p.rss)});
    have_rss = have_rss || p.rss != 0;
  }
  for (const Marker& m : markers) {
    t0 = std::min(t0, m.elapsed_ms);
    t1 = std::max(t1, m.elapsed_ms);
  }
  if (!(t1 > t0)) t1 = t0 + 1;
  if (!(ymax > 0)) ymax = 1024;
  const double ystep = svg::byte_step(ymax, 5);
  const double ytop = std::ceil(ymax / ystep) * ystep;
  const svg::TimeUnit tunit = svg::time_unit(t1 - t0);
  const double tstep = svg::time_step(t1 - t0, 8, tunit);

  auto x_of = [&](double t) { return left + (t - t0) / (t1 - t0) * plot_w; };
  auto y_of = [&](double v) { return top + plot_h - v / ytop * plot_h; };

  std::string out;
  out.reserve(shown.size() * 48 + 4096);
  out += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + std::to_string(width) +
         "\" height=\"" + std::to_string(height) + "\" viewBox=\"0 0 " + std::to_string(width) +
         " " + std::to_string(height) +
         "\" font-family=\"system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif\" "
         "font-size=\"12\" role=\"img\">\n";
  out += "<title>Memory over time</title>\n";
  out += "<rect x=\"0\" y=\"0\" width=\"" + std::to_string(width) + "\" height=\"" +
         std::to_string(height) + "\" fill=\"#ffffff\"/>\n";

  // Grid and y axis labels.
  out += "<g stroke=\"#e3e6ea\" stroke-width=\"1\">\n";
  for (double v = 0; v <= ytop + ystep / 2; v += ystep) {
    out += "<line x1=\"" + number(left) + "\" x2=\"" + number(left + plot_w) + "\" y1=\"" +
           number(y_of(v)) + "\" y2=\"" + number(y_of(v)) + "\"/>\n";
  }
  out += "</g>\n<g fill=\"#5f6b7a\" text-anchor=\"end\">\n";
  for (double v = 0; v <= ytop + ystep / 2; v += ystep) {
    out += "<text x=\"" + number(left - 8) + "\" y=\"" + number(y_of(v) + 4) + "\">" +
           html_escape(svg::size_label(v)) + "</text>\n";
  }
  out += "</g>\n<g fill=\"#5f6b7a\" text-anchor=\"middle\">\n";
  const double first_tick = std::ceil(t0 / tstep) * tstep;
  for (int i = 0;; ++i) {
    const double t = first_tick + i * tstep;
    if (t > t1 + tstep / 1000) break;
    const double x = x_of(t);
    out += "<line x1=\"" + number(x) + "\" x2=\"" + number(x) + "\" y1=\"" + number(top + plot_h) +
           "\" y2=\"" + number(top + plot_h + 5) + "\" stroke=\"#9aa4b1\"/>\n";
    // The last label ends at its tick rather than past the picture's edge.
    const bool at_edge = x > width - 36;
    out += "<text x=\"" + number(at_edge ? x + 4 : x) + "\" y=\"" + number(top + plot_h + 19) +
           "\"" + (at_edge ? " text-anchor=\"end\"" : "") + ">" +
           html_escape(svg::time_label(t, tunit)) + "</text>\n";
  }
  out += "</g>\n";
  out += "<line x1=\"" + number(left) + "\" x2=\"" + number(left + plot_w) + "\" y1=\"" +
         number(top + plot_h) + "\" y2=\"" + number(top + plot_h) +
         "\" stroke=\"#9aa4b1\" stroke-width=\"1\"/>\n";

  // Series.
  struct Series {
    const char* name;
    const char* colour;
    const char* dash;
    std::uint64_t Point::*field;
  };
  std::vector<Series> series = {
      {"traced current", "#2563eb", "", &Point::traced_current},
      {"traced peak", "#ea580c", "6 4", &Point::traced_peak},
  };
  if (have_rss) series.push_back({"RSS", "#16a34a", "2 3", &Point::rss});
  if (!shown.empty()) {
    // The area under traced current, then each line.
    std::string area = "<path fill=\"#2563eb\" fill-opacity=\"0.10\" stroke=\"none\" d=\"M" +
                       number(x_of(shown.front().elapsed_ms)) + " " + number(y_of(0));
    for (const Point& p : shown) {
      area += " L" + number(x_of(p.elapsed_ms)) + " " +
              number(y_of(static_cast<double>(p.traced_current)));
    }
    area += " L" + number(x_of(shown.back().elapsed_ms)) + " " + number(y_of(0)) + " Z\"/>\n";
    out += area;
    for (const Series& s : series) {
      out += "<polyline fill=\"none\" stroke=\"";
      out += s.colour;
      out += "\" stroke-width=\"1.8\" stroke-linejoin=\"round\"";
      if (*s.dash) out += std::string(" stroke-dasharray=\"") + s.dash + "\"";
      out += " points=\"";
      for (const Point& p : shown) {
        out +=
            number(x_of(p.elapsed_ms)) + "," + number(y_of(static_cast<double>(p.*s.field))) + " ";
      }
      if (out.back() == ' ') out.pop_back();
      out += "\"><title>" + std::string(s.name) + "</title></polyline>\n";
    }
  } else {
    out += "<text x=\"" + number(left + plot_w / 2) + "\" y=\"" + number(top + plot_h / 2) +
           "\" text-anchor=\"middle\" fill=\"#5f6b7a\">No samples were recorded</text>\n";
  }

  // Markers: labels on up to three rows above the plot, each row holding labels that do not
  // overlap (about 6.5 px per character).
  if (!markers.empty()) {
    out += "<g font-size=\"11\" fill=\"#334155\">\n";
    double row_end[3] = {-1e9, -1e9, -1e9};
    for (const Marker& m : markers) {
      const double x = x_of(m.elapsed_ms);
      std::string label = m.label.empty() ? svg::time_label(m.elapsed_ms) : m.label;
      if (label.size() > 28) {
        std::size_t cut = 26;
        while (cut > 0 && (static_cast<unsigned char>(label[cut]) & 0xC0u) == 0x80u) --cut;
        label = label.substr(0, cut) + "\xE2\x80\xA6";
      }
      const double w = 6.5 * static_cast<double>(label.size()) + 8;
      int row = 0;
      while (row < 2 && row_end[row] > x) ++row;
      row_end[row] = x + w;
      const double label_y = 16 + 14 * row;
      out += "<g><title>" + html_escape(m.label) + " (" +
             html_escape(svg::time_label(m.elapsed_ms)) + ")</title>";
      out += "<line x1=\"" + number(x) + "\" x2=\"" + number(x) + "\" y1=\"" + number(label_y + 4) +
             "\" y2=\"" + number(top + plot_h) +
             "\" stroke=\"#64748b\" stroke-width=\"1\" stroke-dasharray=\"3 3\"/>";
      const bool flip = x + w > width;  // near the right edge: the label ends at the line
      out += "<text x=\"" + number(flip ? x - 3 : x + 3) + "\" y=\"" + number(label_y) + "\"" +
             (flip ? " text-anchor=\"end\"" : "") + ">" + html_escape(label) + "</text></g>\n";
    }
    out += "</g>\n";
  }

  // Legend, below the time axis.
  double lx = left;
  const double ly = height - 14;
  out += "<g font-size=\"12\" fill=\"#1f2937\">\n";
  for (const Series& s : series) {
    out += "<line x1=\"" + number(lx) + "\" x2=\"" + number(lx + 22) + "\" y1=\"" + number(ly - 4) +
           "\" y2=\"" + number(ly - 4) + "\" stroke=\"" + s.colour + "\" stroke-width=\"2.5\"" +
           (*s.dash ? std::string(" stroke-dasharray=\"") + s.dash + "\"" : std::string()) + "/>";
    out += "<text x=\"" + number(lx + 28) + "\" y=\"" + number(ly) + "\">" + s.name + "</text>\n";
    lx += 28 + 7.0 * static_cast<double>(std::string_view(s.name).size()) + 24;
  }
  if (!markers.empty()) {
    out += "<line x1=\"" + number(lx) + "\" x2=\"" + number(lx + 22) + "\" y1=\"" + number(ly - 4) +
           "\" y2=\"" + number(ly - 4) +
           "\" stroke=\"#64748b\" stroke-width=\"1.5\" stroke-dasharray=\"3 3\"/>";
    out += "<text x=\"" + number(lx + 28) + "\" y=\"" + number(ly) + "\">snapshot</text>\n";
  }
  out += "</g>\n</svg>\n";
  return out;
}

// ---------------------------------------------------------------------------------------------
// Flame graph data

/// build_flame's defaults: the stacks kept over all snapshots, and a bound on the bytes their
/// frames and stacks take in the page (about 3 MiB: the page stays under 5 MB).
inline constexpr std::size_t default_max_stacks = 5000;
inline constexpr std::size_t default_max_flame_bytes = std::size_t{3} << 20;
/// Longer function or file names are cut (C++ template names run to kilobytes).
inline constexpr std::size_t max_name_bytes = 300;

namespace flame {

inline std::string clipped(const std::string& s) {
  if (s.size() <= max_name_bytes) return s;
  std::size_t cut = max_name_bytes - 3;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0u) == 0x80u) --cut;
  return s.substr(0, cut) + "\xE2\x80\xA6";
}

struct FrameKey {
  const tracemalloc::Frame* frame;
  friend bool operator==(const FrameKey& a, const FrameKey& b) { return *a.frame == *b.frame; }
};
struct FrameKeyHash {
  std::size_t operator()(const FrameKey& k) const noexcept {
    return std::hash<tracemalloc::Frame>()(*k.frame);
  }
};

/// A traceback's hash from its frames' lines and name lengths only: matching a statistic of
/// one snapshot with the stacks kept then reads no string, and two different stacks that hash
/// alike are still told apart by equality.
struct ShapeHash {
  std::size_t operator()(const tracemalloc::Traceback& t) const noexcept {
    std::uint64_t h = t.size();
    for (const tracemalloc::Frame& f : t) {
      h = (h ^ static_cast<std::uint64_t>(static_cast<std::uint32_t>(f.lineno))) * 0x100000001b3ULL;
      h = (h ^ f.filename.size()) * 0x100000001b3ULL;
      h = (h ^ f.function.size()) * 0x100000001b3ULL;
    }
    return static_cast<std::size_t>(h ^ (h >> 29));
  }
};

}  // namespace flame

/**
 * The flame graphs' data from each snapshot's statistics("traceback") (label, statistics), as
 * build_flame(), for a caller that has them already.
 */
inline Flame build_flame_from_statistics(
    const std::vector<std::pair<std::string, std::vector<tracemalloc::Statistic>>>& snapshots,
    std::size_t max_stacks = default_max_stacks, std::size_t max_bytes = default_max_flame_bytes) {
  using tracemalloc::Statistic;
  using tracemalloc::Traceback;
  Flame flame;

  // Candidates: a stack among the largest `max_stacks` overall by its largest size is among the
  // largest `max_stacks` of the snapshot where it is largest.
  struct Candidate {
    const Traceback* traceback;
    std::size_t max_size;
  };
  std::vector<Candidate> candidates;
  std::unordered_map<Traceback, std::size_t, flame::ShapeHash> candidate_of;
  for (const auto& [label, s] : snapshots) {
    for (std::size_t i = 0; i < std::min(max_stacks, s.size()); ++i) {
      auto [it, added] = candidate_of.try_emplace(s[i].traceback, candidates.size());
      if (added) {
        candidates.push_back({&s[i].traceback, s[i].size});
      } else {
        candidates[it->second].max_size = std::max(candidates[it->second].max_size, s[i].size);
      }
    }
  }
  std::vector<std::size_t> order(candidates.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return candidates[a].max_size > candidates[b].max_size;
  });

  // Intern the frames and stacks of the stacks kept.
  constexpr std::uint32_t not_kept = 0xffffffffU;
  std::vector<std::uint32_t> stack_of(candidates.size(), not_kept);
  std::unordered_map<flame::FrameKey, std::uint32_t, flame::FrameKeyHash> frame_ids;
  const tracemalloc::Frame unknown{"<unknown>", 0, "<unknown>"};
  std::unordered_map<std::string_view, bool> files_seen;
  std::size_t bytes = 0;
  for (std::size_t i = 0; i < order.size() && flame.stacks.size() < max_stacks; ++i) {
    const Traceback& tb = *candidates[order[i]].traceback;
    std::vector<std::uint32_t> stack;
    stack.reserve(std::max<std::size_t>(tb.size(), 1));
    // What the stack adds to the page: its frame ids, a sample in each snapshot (stack id,
    // bytes, count: at most 28 characters), and its frames not met before, as escaped.
    std::size_t added_bytes = 4 + 28 * snapshots.size();
    std::vector<const tracemalloc::Frame*> new_frames;
    auto intern = [&](const tracemalloc::Frame& f) {
      auto it = frame_ids.find(flame::FrameKey{&f});
      if (it != frame_ids.end()) {
        stack.push_back(it->second);
        added_bytes += 6;
        return;
      }
      // Ids for the frames new in this stack, given for real once the stack is kept.
      std::uint32_t id = static_cast<std::uint32_t>(flame.frames.size() + new_frames.size());
      for (std::size_t k = 0; k < new_frames.size(); ++k) {
        if (*new_frames[k] == f) id = static_cast<std::uint32_t>(flame.frames.size() + k);
      }
      if (id == flame.frames.size() + new_frames.size()) {
        new_frames.push_back(&f);
        added_bytes += json_escape(flame::clipped(f.function)).size() + 20;
        if (!files_seen.contains(f.filename)) {
          added_bytes += json_escape(flame::clipped(f.filename)).size() + 3;
        }
      }
      stack.push_back(id);
      added_bytes += 6;
    };
    if (tb.empty()) {
      intern(unknown);
    } else {
      for (auto f = tb.end(); f != tb.begin();) intern(*--f);  // root first
    }
    if (bytes + added_bytes > max_bytes && !flame.stacks.empty()) break;
    bytes += added_bytes;
    for (const tracemalloc::Frame* f : new_frames) {
      files_seen.emplace(f->filename, true);
      frame_ids.emplace(flame::FrameKey{f}, static_cast<std::uint32_t>(flame.frames.size()));
      flame.frames.push_back(
          FlameFrame{flame::clipped(f->function), flame::clipped(f->filename), f->lineno});
    }
    stack_of[order[i]] = static_cast<std::uint32_t>(flame.stacks.size());
    flame.stacks.push_back(std::move(stack));
  }

  // Each snapshot: the stacks kept that it has, and the rest as "other".
  for (std::size_t k = 0; k < snapshots.size(); ++k) {
    FlameSnapshot out;
    out.label = snapshots[k].first;
    for (const Statistic& s : snapshots[k].second) {
      const auto it = candidate_of.find(s.traceback);
      const std::uint32_t id = it == candidate_of.end() ? not_kept : stack_of[it->second];
      if (id == not_kept) {
        out.other_bytes += s.size;
        out.other_count += s.count;
        ++out.other_stacks;
      } else {
        out.samples.push_back(FlameSample{id, s.size, s.count});
      }
    }
    flame.snapshots.push_back(std::move(out));
  }
  return flame;
}

/**
 * The flame graphs' data for `snapshots` (label, snapshot), from each snapshot's
 * statistics("traceback") (so stacks are told apart by file and line, as Python's are). Keeps
 * the `max_stacks` stacks that are largest in any snapshot (so each snapshot's largest are
 * there, and a diff between two snapshots is exact for every stack kept), fewer if their frames,
 * stacks and samples would take more than about `max_bytes` of the page; in each snapshot, what
 * the other stacks hold is folded into "other". A traceback without frames is the stack of one
 * "<unknown>" frame.
 */
inline Flame build_flame(
    const std::vector<std::pair<std::string, tracemalloc::Snapshot>>& snapshots,
    std::size_t max_stacks = default_max_stacks, std::size_t max_bytes = default_max_flame_bytes) {
  std::vector<std::pair<std::string, std::vector<tracemalloc::Statistic>>> stats;
  stats.reserve(snapshots.size());
  for (const auto& [label, snapshot] : snapshots) {
    stats.emplace_back(label, snapshot.statistics("traceback"));
  }
  return build_flame_from_statistics(stats, max_stacks, max_bytes);
}

// ---------------------------------------------------------------------------------------------
// The page

namespace page {

inline std::string sort_key(double v) {
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

inline std::string count(std::uint64_t n) {
  std::string digits = std::to_string(n);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

inline std::string size(std::uint64_t bytes) {
  return tracemalloc::detail::format_size(static_cast<double>(bytes), false);
}

/// "N stacks shown, M folded into other (X)", as the page's script also writes it.
inline std::string fold_text(const FlameSnapshot& s) {
  std::uint64_t total = s.other_bytes;
  for (const FlameSample& x : s.samples) total += x.bytes;
  return count(s.samples.size()) + " stacks shown, " + count(s.other_stacks) +
         " folded into other (" + size(s.other_bytes) + "); " + size(total) + " live in total";
}

inline void table(std::string& out, const Table& t) {
  const std::size_t ncols = t.columns.size();
  std::vector<bool> numeric(ncols, !t.rows.empty());
  for (const auto& row : t.rows) {
    for (std::size_t c = 0; c < ncols; ++c) {
      if (c >= row.size() || std::isnan(row[c].sort_key)) numeric[c] = false;
    }
  }
  out += "<div class=\"table-wrap\"><table class=\"sortable\"><thead><tr>";
  for (std::size_t c = 0; c < ncols; ++c) {
    out += numeric[c] ? "<th class=\"num\" scope=\"col\">" : "<th scope=\"col\">";
    out += html_escape(t.columns[c]) + "</th>";
  }
  out += "</tr></thead><tbody>\n";
  for (const auto& row : t.rows) {
    out += "<tr>";
    for (std::size_t c = 0; c < std::max(ncols, row.size()); ++c) {
      const Cell empty{};
      const Cell& cell = c < row.size() ? row[c] : empty;
      out += c < ncols && numeric[c] ? "<td class=\"num\"" : "<td";
      if (!std::isnan(cell.sort_key)) out += " data-sort=\"" + sort_key(cell.sort_key) + "\"";
      out += ">" + html_escape(cell.text) + "</td>";
    }
    out += "</tr>\n";
  }
  out += "</tbody></table></div>\n";
}

inline void flame_json(std::string& out, const Flame& flame, std::size_t default_snapshot) {
  // Files are interned too: a file's name is written once however many frames it holds.
  std::unordered_map<std::string_view, std::size_t> file_ids;
  std::vector<std::string_view> files;
  std::vector<std::size_t> file_of;
  file_of.reserve(flame.frames.size());
  for (const FlameFrame& f : flame.frames) {
    auto [it, added] = file_ids.try_emplace(f.file, files.size());
    if (added) files.push_back(f.file);
    file_of.push_back(it->second);
  }
  out += "{\"files\":[";
  for (std::size_t i = 0; i < files.size(); ++i) {
    out += (i ? ",\"" : "\"") + json_escape(files[i]) + "\"";
  }
  out += "],\n\"frames\":[";
  for (std::size_t i = 0; i < flame.frames.size(); ++i) {
    const FlameFrame& f = flame.frames[i];
    out += (i ? ",[\"" : "[\"") + json_escape(f.function) + "\"," + std::to_string(file_of[i]) +
           "," + std::to_string(f.line) + "]";
    if (i % 16 == 15) out += '\n';
  }
  out += "],\n\"stacks\":[";
  for (std::size_t i = 0; i < flame.stacks.size(); ++i) {
    out += i ? ",[" : "[";
    for (std::size_t k = 0; k < flame.stacks[i].size(); ++k) {
      if (k) out += ',';
      out += std::to_string(flame.stacks[i][k]);
    }
    out += ']';
    if (i % 16 == 15) out += '\n';
  }
  out += "],\n\"snapshots\":[";
  for (std::size_t i = 0; i < flame.snapshots.size(); ++i) {
    const FlameSnapshot& s = flame.snapshots[i];
    out += (i ? ",\n{\"label\":\"" : "{\"label\":\"") + json_escape(s.label) + "\",\"samples\":[";
    for (std::size_t k = 0; k < s.samples.size(); ++k) {
      const FlameSample& x = s.samples[k];
      if (k) out += ',';
      out +=
          std::to_string(x.stack) + "," + std::to_string(x.bytes) + "," + std::to_string(x.count);
    }
    out += "],\"other\":[" + std::to_string(s.other_bytes) + "," + std::to_string(s.other_count) +
           "," + std::to_string(s.other_stacks) + "]}";
  }
  out += "],\n\"default\":" +
         std::to_string(
             std::min(default_snapshot, flame.snapshots.empty() ? 0 : flame.snapshots.size() - 1)) +
         "}";
}

inline constexpr std::string_view style = R"css(
:root{--ink:#1f2937;--muted:#5f6b7a;--line:#e3e6ea;--bg:#f6f7f9;--card:#fff;--accent:#2563eb}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
header{background:#111827;color:#f9fafb;padding:18px 32px 12px}
header h1{margin:0 0 8px;font-size:22px;font-weight:600}
nav{display:flex;flex-wrap:wrap;gap:4px 18px;font-size:14px}
nav a{color:#c7d2fe;text-decoration:none}nav a:hover{text-decoration:underline}
main{max-width:1240px;margin:0 auto;padding:20px 32px 48px}
section{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:18px 22px;margin:0 0 20px}
h2{margin:0 0 10px;font-size:18px;font-weight:600}
p.intro,p.note{color:var(--muted);margin:0 0 12px;max-width:80ch}
.empty{color:var(--muted);font-style:italic;margin:4px 0}
dl.summary{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:12px;margin:0}
dl.summary div{background:var(--bg);border-radius:6px;padding:10px 14px}
dl.summary dt{color:var(--muted);font-size:13px}
dl.summary dd{margin:2px 0 0;font-size:19px;font-weight:600;font-variant-numeric:tabular-nums;overflow-wrap:anywhere}
#timeline svg{width:100%;height:auto;display:block}
.table-wrap{overflow-x:auto}
table.sortable{border-collapse:collapse;width:100%;font-size:14px}
.sortable th,.sortable td{padding:6px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
.sortable td{overflow-wrap:anywhere}
.sortable th{background:#f1f3f6;font-weight:600;cursor:pointer;user-select:none;white-space:nowrap;position:sticky;top:0}
.sortable th:hover{background:#e6eaf0}
.sortable th[aria-sort=ascending]::after{content:" \25B2";font-size:10px}
.sortable th[aria-sort=descending]::after{content:" \25BC";font-size:10px}
.sortable .num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.sortable tbody tr:nth-child(even){background:#fafbfc}
.sortable tbody tr:hover{background:#eef4ff}
details{margin-top:12px}
summary{cursor:pointer;color:var(--muted)}
pre{background:#f8fafc;border:1px solid var(--line);border-radius:6px;padding:10px 12px;overflow-x:auto;font:13px/1.45 ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace;white-space:pre}
.controls{display:flex;flex-wrap:wrap;align-items:center;gap:10px 18px;margin:0 0 8px;font-size:14px}
select,button{font:inherit;font-size:14px;padding:3px 8px;border:1px solid #c5ccd6;border-radius:5px;background:#fff;color:var(--ink)}
button{cursor:pointer}button:hover{background:#f1f3f6}
.flame-info{color:var(--muted);font-size:13px;margin:0 0 8px}
.crumbs{font-size:13px;margin:0 0 6px;min-height:20px;overflow-wrap:anywhere}
.crumbs a{color:var(--accent);cursor:pointer;text-decoration:none}.crumbs a:hover{text-decoration:underline}
.crumbs span.sep{color:var(--muted);margin:0 6px}
.flame{position:relative;width:100%;min-height:40px;overflow:hidden;font:12px/18px ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace}
.fb{position:absolute;height:17px;padding:0 4px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;cursor:pointer;border-radius:2px;color:#1f2937}
.fb:hover{outline:1px solid #111827;z-index:1}
.fb.dim{opacity:.6}
.flame.searching .fb{opacity:.35}
.flame.searching .fb.hit{opacity:1;outline:2px solid #6d28d9;outline-offset:-2px}
input[type=search]{font:inherit;font-size:14px;padding:3px 8px;border:1px solid #c5ccd6;border-radius:5px;width:220px}
.found{color:#6d28d9;font-size:13px}
.fb .loc{opacity:.68}
.legend{display:flex;gap:14px;font-size:13px;color:var(--muted);margin:0 0 8px}
.legend i{display:inline-block;width:12px;height:12px;border-radius:2px;vertical-align:-2px;margin-right:5px}
.tip{position:fixed;z-index:10;pointer-events:none;background:#111827;color:#f9fafb;border-radius:6px;padding:8px 10px;font-size:13px;line-height:1.4;max-width:560px;box-shadow:0 4px 14px rgba(0,0,0,.25)}
.tip b{display:block;font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-weight:600;overflow-wrap:anywhere;margin-bottom:2px}
.tip .where{color:#cbd5e1;overflow-wrap:anywhere}
.tip table{border-collapse:collapse;font-size:13px;margin-top:4px}.tip td{padding:0 12px 0 0;font-variant-numeric:tabular-nums}
footer{color:var(--muted);font-size:12px;text-align:center;padding:0 0 24px}
)css";

// The page's script: sortable tables, and the two icicle flame graphs (root at the top) drawn
// from the JSON block "flame-data". ES2017, no library.
inline constexpr std::string_view script = R"js(
(function () {
'use strict';
var UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
function size(n, sign) {
  var v = n;
  for (var i = 0; i < UNITS.length; i++) {
    var plus = sign && v >= 0 ? '+' : '';
    if (i > 0 && Math.abs(v) < 100) return plus + v.toFixed(1) + ' ' + UNITS[i];
    if (Math.abs(v) < 10240 || i === UNITS.length - 1) return plus + v.toFixed(0) + ' ' + UNITS[i];
    v /= 1024;
  }
  return String(n);
}
function count(n, sign) {
  var s = String(Math.abs(n)).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return (n < 0 ? '-' : sign ? '+' : '') + s;
}
function esc(s) {
  return String(s).replace(/[&<>"']/g, function (c) {
    return {'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[c];
  });
}
function pct(part, whole) { return whole > 0 ? (100 * part / whole).toFixed(1) + '%' : '-'; }

// Sortable tables: a click (or Enter) on a header sorts by that column, again reverses.
function initTables() {
  var tables = document.querySelectorAll('table.sortable');
  Array.prototype.forEach.call(tables, function (table) {
    if (!table.tHead || !table.tBodies.length) return;
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      th.tabIndex = 0;
      function sort() {
        var numeric = th.classList.contains('num');
        var dir = th.getAttribute('aria-sort');
        dir = dir === 'ascending' ? 'descending' : dir === 'descending' ? 'ascending'
            : numeric ? 'descending' : 'ascending';
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute('aria-sort'); });
        th.setAttribute('aria-sort', dir);
        var sign = dir === 'ascending' ? 1 : -1;
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = a.cells[col], y = b.cells[col];
          if (!x || !y) return (x ? 1 : 0) - (y ? 1 : 0);
          var kx = x.getAttribute('data-sort'), ky = y.getAttribute('data-sort');
          if (kx !== null && ky !== null) return sign * (parseFloat(kx) - parseFloat(ky));
          return sign * x.textContent.localeCompare(y.textContent, undefined, {numeric: true});
        });
        rows.forEach(function (r) { body.appendChild(r); });
      }
      th.addEventListener('click', sort);
      th.addEventListener('keydown', function (e) {
        if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); sort(); }
      });
    });
  });
}

// Flame graphs.
var dataBlock = document.getElementById('flame-data');
var data = dataBlock ? JSON.parse(dataBlock.textContent)
                     : {files: [], frames: [], stacks: [], snapshots: [], 'default': 0};
var ROOT = -1, OTHER = -2;
var tip = document.getElementById('flame-tip');

function Node(f, parent) {
  this.f = f; this.parent = parent; this.kids = new Map(); this.list = [];
  this.v = [0, 0]; this.c = [0, 0]; this.sv = [0, 0]; this.w = 0;
}
function add(root, stack, slot, bytes, n) {
  var node = root;
  node.v[slot] += bytes; node.c[slot] += n;
  for (var i = 0; i < stack.length; i++) {
    var kid = node.kids.get(stack[i]);
    if (!kid) { kid = new Node(stack[i], node); node.kids.set(stack[i], kid); }
    kid.v[slot] += bytes; kid.c[slot] += n;
    node = kid;
  }
  node.sv[slot] += bytes;
}
// Widths: a node's own bytes (the larger of the two in a diff) plus its children's, so that
// children always fit under their parent.
function finish(node, slots, stats) {
  var w = slots === 1 ? node.sv[0] : Math.max(node.sv[0], node.sv[1]);
  node.list = Array.from(node.kids.values());
  for (var i = 0; i < node.list.length; i++) w += finish(node.list[i], slots, stats);
  node.list.sort(function (a, b) { return b.w - a.w; });
  if (node.f !== ROOT) stats.maxDiff = Math.max(stats.maxDiff, Math.abs(node.v[1] - node.v[0]));
  node.w = w;
  return w;
}
function build(which) {
  var root = new Node(ROOT, null);
  which.forEach(function (index, slot) {
    var s = data.snapshots[index];
    var samples = s.samples;
    for (var i = 0; i + 2 < samples.length; i += 3) {
      add(root, data.stacks[samples[i]], slot, samples[i + 1], samples[i + 2]);
    }
    if (s.other[0] > 0 || s.other[1] > 0) add(root, [OTHER], slot, s.other[0], s.other[1]);
  });
  var stats = {maxDiff: 0};
  finish(root, which.length, stats);
  root.maxDiff = stats.maxDiff;
  return root;
}
function frameName(f, view) {
  if (f === ROOT) return view.rootName();
  if (f === OTHER) return 'other (folded stacks)';
  return data.frames[f][0] || '<unknown>';
}
function frameWhere(f) {
  if (f < 0) return '';
  var fr = data.frames[f];
  return data.files[fr[1]] + (fr[2] > 0 ? ':' + fr[2] : '');
}
// "file.cpp:12" after the name on a bar: one function called from two lines is two frames.
function shortWhere(f) {
  if (f < 0) return '';
  var fr = data.frames[f], file = data.files[fr[1]];
  return ' <span class="loc">' + esc(file.slice(file.lastIndexOf('/') + 1)) +
         (fr[2] > 0 ? ':' + fr[2] : '') + '</span>';
}
function hue(s) {
  var h = 0;
  for (var i = 0; i < s.length; i++) h = (h * 31 + s.charCodeAt(i)) | 0;
  return Math.abs(h);
}

function View(prefix, diff) {
  this.el = document.getElementById(prefix + '-view');
  this.crumbs = document.getElementById(prefix + '-crumbs');
  this.info = document.getElementById(prefix + '-info');
  this.found = document.getElementById(prefix + '-found');
  this.diff = diff;
  this.root = null; this.zoom = null; this.nodes = []; this.query = '';
  var self = this;
  var find = document.getElementById(prefix + '-find');
  find.addEventListener('input', function () {
    self.query = find.value.trim().toLowerCase();
    self.render();
  });
  function target(e) {
    var t = e.target.closest ? e.target.closest('.fb') : null;
    return t ? self.nodes[+t.getAttribute('data-n')] : null;
  }
  this.el.addEventListener('mousemove', function (e) {
    var node = target(e);
    if (node) showTip(self, node, e); else hideTip();
  });
  this.el.addEventListener('mouseleave', hideTip);
  this.el.addEventListener('click', function (e) {
    var node = target(e);
    if (node) { self.zoom = node; self.render(); }
  });
  this.crumbs.addEventListener('click', function (e) {
    var a = e.target.closest ? e.target.closest('a') : null;
    if (!a) return;
    var node = self.zoom;
    for (var up = +a.getAttribute('data-up'); up > 0 && node.parent; up--) node = node.parent;
    self.zoom = node; self.render();
  });
}
View.prototype.rootName = function () {
  return this.diff ? 'all (' + this.labels[0] + ' \u2192 ' + this.labels[1] + ')'
                   : 'all (' + this.labels[0] + ')';
};
View.prototype.show = function (which) {
  this.labels = which.map(function (i) { return data.snapshots[i].label || 'snapshot ' + (i + 1); });
  this.which = which;
  this.root = build(which);
  this.zoom = this.root;
  this.render();
};
View.prototype.colour = function (node) {
  if (node.f === ROOT) return '#cbd5e1';
  if (node.f === OTHER) return '#d4d4d8';
  if (this.diff) {
    var d = node.v[1] - node.v[0], m = this.root.maxDiff;
    if (d === 0 || m === 0) return '#e5e7eb';
    var t = Math.min(1, Math.abs(d) / m);
    var light = (90 - 35 * Math.sqrt(t)).toFixed(0);
    return d > 0 ? 'hsl(2,78%,' + light + '%)' : 'hsl(212,75%,' + light + '%)';
  }
  var h = hue(frameName(node.f, this));
  return 'hsl(' + (18 + h % 34) + ',' + (70 + h % 20) + '%,' + (62 + (h >> 5) % 12) + '%)';
};
View.prototype.render = function () {
  var el = this.el, W = Math.max(el.clientWidth, 300), ROW = 18, self = this;
  var chain = [];
  for (var n = this.zoom; n; n = n.parent) chain.unshift(n);
  var html = [];
  this.nodes = [];
  var depth = chain.length;
  function bar(node, x, y, w, dim) {
    var i = self.nodes.push(node) - 1;
    var hit = self.matches(node) ? ' hit' : '';
    html.push('<div class="fb' + (dim ? ' dim' : '') + hit + '" data-n="' + i + '" style="left:' +
              x.toFixed(1) + 'px;top:' + y + 'px;width:' + Math.max(w - 1, 1).toFixed(1) +
              'px;background:' + self.colour(node) + '">' +
              (w > 30 ? esc(frameName(node.f, self)) + shortWhere(node.f) : '') + '</div>');
  }
  chain.forEach(function (node, d) { bar(node, 0, d * ROW, W, d < chain.length - 1); });
  var scale = this.zoom.w > 0 ? W / this.zoom.w : 0;
  (function walk(node, x, d) {
    for (var i = 0; i < node.list.length; i++) {
      var kid = node.list[i], w = kid.w * scale;
      if (w < 1) break;  // sorted by width: the rest are narrower
      bar(kid, x, d * ROW, w, false);
      if (d + 1 > depth) depth = d + 1;
      walk(kid, x, d + 1);
      x += w;
    }
  })(this.zoom, 0, chain.length);
  el.style.height = (depth * ROW + 2) + 'px';
  el.innerHTML = html.join('');
  el.classList.toggle('searching', this.query !== '');
  this.showFound();
  var crumbs = chain.map(function (node, d) {
    var name = esc(frameName(node.f, self));
    return d === chain.length - 1 ? '<b>' + name + '</b>'
         : '<a data-up="' + (chain.length - 1 - d) + '">' + name + '</a>';
  });
  this.crumbs.innerHTML = chain.length > 1 ? crumbs.join('<span class="sep">\u203A</span>') +
      ' <span class="sep">(click a frame to zoom, a name here to zoom out)</span>'
      : '<span class="sep">Click a frame to zoom in.</span>';
};

// Search: frames whose function or file:line holds the text are outlined, the others dimmed,
// and the memory below the outermost matches (in the zoomed part) is added up.
View.prototype.matches = function (node) {
  if (!this.query || node.f < 0) return false;
  if (node.key === undefined) {
    node.key = (frameName(node.f, this) + ' ' + frameWhere(node.f)).toLowerCase();
  }
  return node.key.indexOf(this.query) >= 0;
};
View.prototype.showFound = function () {
  if (!this.query) { this.found.textContent = ''; return; }
  var self = this, sum = [0, 0], frames = 0;
  (function walk(node) {
    if (self.matches(node)) {
      sum[0] += node.v[0]; sum[1] += node.v[1]; frames++;
      return;
    }
    node.list.forEach(walk);
  })(this.zoom);
  var z = this.zoom.v;
  this.found.textContent = frames === 0 ? 'no frame matches'
      : this.diff ? 'matches hold ' + size(sum[0]) + ' before, ' + size(sum[1]) + ' after (' +
                    size(sum[1] - sum[0], true) + ')'
      : 'matches hold ' + size(sum[0]) + ', ' + pct(sum[0], z[0]) + ' of what is shown';
};

function showTip(view, node, e) {
  var total = view.root;
  var html = '<b>' + esc(frameName(node.f, view)) + '</b>';
  var where = frameWhere(node.f);
  if (where) html += '<div class="where">' + esc(where) + '</div>';
  if (node.f === OTHER) {
    var folded = view.which.map(function (i) { return count(data.snapshots[i].other[2]); });
    html += '<div class="where">' + folded.join(' \u2192 ') + ' stacks folded</div>';
  }
  if (view.diff) {
    html += '<table><tr><td>before</td><td>' + size(node.v[0]) + '</td><td>' + count(node.c[0]) +
            ' allocations</td></tr><tr><td>after</td><td>' + size(node.v[1]) + '</td><td>' +
            count(node.c[1]) + ' allocations</td></tr><tr><td>diff</td><td>' +
            size(node.v[1] - node.v[0], true) + '</td><td>' + count(node.c[1] - node.c[0], true) +
            ' allocations</td></tr></table>';
  } else {
    html += '<table><tr><td>live</td><td>' + size(node.v[0]) + '</td></tr><tr><td>allocations' +
            '</td><td>' + count(node.c[0]) + '</td></tr><tr><td>share</td><td>' +
            pct(node.v[0], total.v[0]) + ' of the snapshot</td></tr></table>';
  }
  tip.innerHTML = html;
  tip.hidden = false;
  var x = e.clientX + 14, y = e.clientY + 14;
  var r = tip.getBoundingClientRect();
  if (x + r.width > window.innerWidth - 8) x = Math.max(8, e.clientX - r.width - 14);
  if (y + r.height > window.innerHeight - 8) y = Math.max(8, e.clientY - r.height - 14);
  tip.style.left = x + 'px';
  tip.style.top = y + 'px';
}
function hideTip() { if (tip) tip.hidden = true; }

function foldText(i) {
  var s = data.snapshots[i], total = s.other[0];
  for (var k = 1; k < s.samples.length; k += 3) total += s.samples[k];
  return count(s.samples.length / 3) + ' stacks shown, ' + count(s.other[2]) +
         ' folded into other (' + size(s.other[0]) + '); ' + size(total) + ' live in total';
}
function fillSelect(select, selected) {
  select.innerHTML = data.snapshots.map(function (s, i) {
    return '<option value="' + i + '"' + (i === selected ? ' selected' : '') + '>' +
           esc(s.label || 'snapshot ' + (i + 1)) + '</option>';
  }).join('');
}

function initFlames() {
  var n = data.snapshots.length;
  if (n === 0) return;
  var single = new View('flame', false);
  var pick = document.getElementById('flame-snapshot');
  fillSelect(pick, data['default']);
  function showSingle() {
    var i = +pick.value;
    single.info.textContent = foldText(i);
    single.show([i]);
  }
  pick.addEventListener('change', showSingle);
  document.getElementById('flame-reset').addEventListener('click', function () {
    single.zoom = single.root; single.render();
  });
  showSingle();
  var views = [single];
  if (n >= 2) {
    var diff = new View('diff', true);
    var before = document.getElementById('diff-before'), after = document.getElementById('diff-after');
    fillSelect(before, 0);
    fillSelect(after, n - 1);
    var showDiff = function () {
      var a = +before.value, b = +after.value;
      diff.info.textContent = 'before: ' + foldText(a) + '. after: ' + foldText(b) + '.';
      diff.show([a, b]);
    };
    before.addEventListener('change', showDiff);
    after.addEventListener('change', showDiff);
    document.getElementById('diff-reset').addEventListener('click', function () {
      diff.zoom = diff.root; diff.render();
    });
    showDiff();
    views.push(diff);
  }
  var pending = false;
  window.addEventListener('resize', function () {
    if (pending) return;
    pending = true;
    requestAnimationFrame(function () {
      pending = false;
      views.forEach(function (v) { v.render(); });
    });
  });
}

initTables();
initFlames();
})();
)js";

}  // namespace page

/// The whole page for `doc` (see write_html).
inline std::string render_html(const Document& doc) {
  std::string out;
  out.reserve(1 << 20);
  const std::string title = doc.title.empty() ? std::string("Memory report") : doc.title;
  out +=
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
      "<link rel=\"icon\" href=\"data:,\">\n<title>";
  out += html_escape(title) + "</title>\n<style>";
  out += page::style;
  out += "</style>\n</head>\n<body>\n<header>\n<h1>" + html_escape(title) + "</h1>\n<nav>";
  out += "<a href=\"#summary\">Summary</a><a href=\"#timeline\">Timeline</a>";
  for (const Section& s : doc.sections) {
    out += "<a href=\"#" + html_escape(s.id) + "\">" +
           html_escape(s.title.empty() ? s.id : s.title) + "</a>";
  }
  out +=
      "<a href=\"#flamegraph\">Flame graph</a><a href=\"#flamegraph-diff\">Diff</a>"
      "</nav>\n</header>\n<main>\n";

  out += "<section id=\"summary\">\n<h2>Summary</h2>\n<dl class=\"summary\">";
  for (const auto& [label, value] : doc.summary) {
    out += "<div><dt>" + html_escape(label) + "</dt><dd>" + html_escape(value) + "</dd></div>";
  }
  out += "</dl>\n</section>\n";

  out += "<section id=\"timeline\">\n<h2>Memory over time</h2>\n";
  out +=
      "<p class=\"intro\">Traced memory (what tracemalloc sees) and the resident set size, "
      "sampled while profiling; dashed lines mark the snapshots.</p>\n";
  out += timeline_svg(doc.timeline, doc.markers, 1100, 360);
  out += "</section>\n";

  for (const Section& s : doc.sections) {
    out += "<section id=\"" + html_escape(s.id) + "\">\n<h2>" +
           html_escape(s.title.empty() ? s.id : s.title) + "</h2>\n";
    if (!s.intro.empty()) out += "<p class=\"intro\">" + html_escape(s.intro) + "</p>\n";
    if (s.table.rows.empty()) {
      out += "<p class=\"empty\">" +
             html_escape(s.empty_text.empty() ? std::string("Nothing to show.") : s.empty_text) +
             "</p>\n";
    } else {
      page::table(out, s.table);
    }
    if (!s.details.empty()) {
      out +=
          "<details open><summary>Details (" + std::to_string(s.details.size()) + ")</summary>\n";
      for (const std::string& d : s.details) out += "<pre>" + html_escape(d) + "</pre>\n";
      out += "</details>\n";
    }
    out += "</section>\n";
  }

  const auto& snaps = doc.flame.snapshots;
  const std::size_t shown = snaps.empty() ? 0 : std::min(doc.flame_default, snaps.size() - 1);
  out += "<section id=\"flamegraph\">\n<h2>Live memory by call stack</h2>\n";
  out +=
      "<p class=\"intro\">An icicle graph: the outermost callers at the top, each frame as "
      "wide as the live memory allocated below it. Hover for sizes, click to zoom.</p>\n";
  if (snaps.empty()) {
    out += "<p class=\"empty\">No snapshot was taken.</p>\n";
  } else {
    out +=
        "<div class=\"controls\"><label>Snapshot <select id=\"flame-snapshot\"></select>"
        "</label><button type=\"button\" id=\"flame-reset\">Reset zoom</button>"
        "<label>Find <input type=\"search\" id=\"flame-find\" placeholder=\"function or file\">"
        "</label><span class=\"found\" id=\"flame-found\"></span></div>\n";
    out += "<p class=\"flame-info\" id=\"flame-info\">" +
           html_escape(page::fold_text(snaps[shown])) +
           "</p>\n<div class=\"crumbs\" id=\"flame-crumbs\"></div>\n"
           "<div class=\"flame\" id=\"flame-view\"></div>\n";
  }
  out += "</section>\n";

  out += "<section id=\"flamegraph-diff\">\n<h2>What changed between two snapshots</h2>\n";
  out +=
      "<p class=\"intro\">The stacks of both snapshots, each frame as wide as the larger of "
      "its two sizes; red grew, blue shrank, the deeper the colour the larger the change. "
      "Hover for before, after and the difference.</p>\n";
  if (snaps.size() < 2) {
    out += "<p class=\"empty\">Take two snapshots or more to compare them.</p>\n";
  } else {
    out +=
        "<div class=\"controls\"><label>Before <select id=\"diff-before\"></select></label>"
        "<label>After <select id=\"diff-after\"></select></label>"
        "<button type=\"button\" id=\"diff-reset\">Reset zoom</button>"
        "<label>Find <input type=\"search\" id=\"diff-find\" placeholder=\"function or file\">"
        "</label><span class=\"found\" id=\"diff-found\"></span></div>\n"
        "<div class=\"legend\"><span><i style=\"background:hsl(2,78%,60%)\"></i>grew</span>"
        "<span><i style=\"background:hsl(212,75%,60%)\"></i>shrank</span>"
        "<span><i style=\"background:#e5e7eb\"></i>unchanged</span></div>\n"
        "<p class=\"flame-info\" id=\"diff-info\"></p>\n"
        "<div class=\"crumbs\" id=\"diff-crumbs\"></div>\n"
        "<div class=\"flame\" id=\"diff-view\"></div>\n";
  }
  out += "</section>\n</main>\n<footer>Generated by memlens</footer>\n";
  out += "<div id=\"flame-tip\" class=\"tip\" hidden></div>\n";
  out += "<script type=\"application/json\" id=\"flame-data\">";
  page::flame_json(out, doc.flame, doc.flame_default);
  out += "</script>\n<script>";
  out += page::script;
  out += "</script>\n</body>\n</html>\n";
  return out;
}

/**
 * Writes the report page for `doc` to `path`, atomically (a temporary file renamed into place:
 * a reader never sees half a page). Throws memlens::Error when it cannot, with the message
 * `<failure> '<path>': <what failed>: <reason>`; `failure` names the part and the act.
 */
inline void write_html(const Document& doc, const std::filesystem::path& path,
                       std::string_view failure = "profiler: cannot write report to") {
  memlens::detail::write_file_atomically<Error>(path.string(), render_html(doc), failure);
}

/// Writes timeline_svg(points, markers, width, height) to `path`, atomically, as write_html.
inline void write_timeline_svg(const std::vector<Point>& points, const std::vector<Marker>& markers,
                               const std::filesystem::path& path, int width = 1100,
                               int height = 360,
                               std::string_view failure = "profiler: cannot write timeline to") {
  memlens::detail::write_file_atomically<Error>(
      path.string(), timeline_svg(points, markers, width, height), failure);
}

}  // namespace memlens::detail::report
