// summary.md and the plots (gnuplot scripts + their data) of a `ferry bench` directory.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>
#include <sstream>
#include <tuple>

#include "ferry/base/files.h"
#include "ferry/base/process.h"
#include "ferry/bench/results.h"

namespace ferry::bench {

namespace {

struct MetricInfo {
  std::string_view column;
  std::string_view title;
  std::string_view definition;
  bool seconds;    // ms shown as seconds; else a count
  bool published;  // the study published this figure
  bool ratio;      // "thesis ÷ method" is meaningful
};

constexpr MetricInfo kMetricInfo[] = {
    {"downtime_study_ms", "Downtime, the study's definition (s)",
     "UP_TIMESTAMP − DOWN_TIMESTAMP: from the start of the dump to the end of the last restore, taken on the "
     "servers.",
     true, true, true},
    {"downtime_ferry_ms", "Downtime, ferry's definition (s)",
     "From the first freeze on the source to the last restore done on the target (for the Podman methods the "
     "first checkpoint command's start stands for the freeze).",
     true, false, true},
    {"migration_study_ms", "Migration time, the study's definition (s)",
     "The sender's run time plus the receiver's run time (where they overlap it counts twice, as in the "
     "study).",
     true, true, true},
    {"migration_ferry_ms", "Migration time, ferry's definition (s)",
     "Wall clock from the method's first step to its last, once.", true, false, true},
    {"client_downtime_ms", "Client-observed downtime (s)",
     "The probe's longest span without a successful answer through the load balancer (a request every 10 ms, "
     "each on a fresh connection with its own deadlines).",
     true, false, true},
    {"failed_requests", "Failed requests (probe)",
     "Probe requests that got no 2xx/3xx answer within the client's 15 s (what a browser shows as an error: "
     "refused, reset, 5xx, or no answer).",
     false, false, false},
    {"max_request_ms", "Longest answered probe request (s)",
     "The slowest probe request that did get an answer: a request held across the move waits this long.",
     true, false, false},
    {"lost_writes", "Lost writes",
     "Writes the service acknowledged that are missing afterwards (the writer: one write every 20 ms through "
     "the "
     "load balancer).",
     false, false, false},
};

struct MethodStyle {
  std::string_view method;
  std::string_view color;
};
constexpr MethodStyle kStyles[] = {{"thesis", "#d62728"}, {"podman", "#1f77b4"}, {"ferry", "#2ca02c"}};
constexpr std::string_view kPublishedColor = "#555555";

std::string colorOf(const std::string& method) {
  for (const auto& s : kStyles)
    if (s.method == method) return std::string(s.color);
  return "#9467bd";
}

std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

std::string shown(double v, bool seconds) {
  return seconds ? fixed(v / 1000.0, 2) : (std::floor(v) == v ? fixed(v, 0) : fixed(v, 1));
}

std::string quoteGp(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return "\"" + out + "\"";
}

std::string profileLabel(const std::string& profile, bool shared) {
  return shared ? profile + " + shared storage" : profile;
}

std::string profileSlug(const std::string& profile, bool shared) {
  return shared ? profile + "-shared" : profile;
}

std::string gpHeader(const std::string& name, const std::string& title, int width, int height) {
  std::ostringstream o;
  o << "# written by ferry bench; renders " << name << ".svg (run in this directory: gnuplot " << name
    << ".gp)\n"
    << "set terminal svg size " << width << "," << height
    << " dynamic noenhanced font 'sans,11' background rgb 'white'\n"
    << "set output '" << name << ".svg'\n"
    << "set title " << quoteGp(title) << "\n"
    << "set grid\n";
  return o.str();
}

// The study's published runs grouped by (environment, rows).
std::map<std::pair<std::string, int>, std::vector<const PublishedRun*>> publishedByCell(
    const std::vector<PublishedRun>& runs) {
  std::map<std::pair<std::string, int>, std::vector<const PublishedRun*>> out;
  for (const auto& p : runs) out[{p.environment, p.rows}].push_back(&p);
  return out;
}

Stat publishedStat(const std::vector<const PublishedRun*>& runs, bool downtime) {
  std::vector<double> v;
  v.reserve(runs.size());
  for (const auto* p : runs) v.push_back(downtime ? p->downtime_ms : p->migration_ms);
  return describe(std::move(v));
}

const CellSummary* findCell(const std::vector<CellSummary>& cells, const CellKey& key) {
  for (const auto& c : cells)
    if (c.key == key) return &c;
  return nullptr;
}

// A group of cells drawn together: one profile (+ shared storage) and one state size.
struct Group {
  std::string profile;
  bool shared;
  int state_mb;
  bool operator<(const Group& o) const {
    return std::tie(profile, shared, state_mb) < std::tie(o.profile, o.shared, o.state_mb);
  }
};

std::string metricTable(const MetricInfo& m, const std::vector<CellSummary>& cells,
                        const std::vector<PublishedRun>& published) {
  std::ostringstream o;
  o << "## " << m.title << "\n\n" << m.definition << "\n\n";
  o << "| profile | method | rows | state MB | n | mean | p50 | p95 |"
    << (m.ratio ? " thesis ÷ method |" : "") << "\n|---|---|---|---|---|---|---|---|"
    << (m.ratio ? "---|" : "") << "\n";
  auto pub = publishedByCell(published);
  std::set<std::tuple<std::string, bool, int>> published_done;
  // The study's figure for the same environment and rows, once per (profile, rows), after
  // the measured rows of that group.
  auto publishedRow = [&](const CellKey& k) {
    std::string env = publishedEnvironment(k.profile, k.shared_storage);
    if (!m.published || env.empty() || !published_done.insert({k.profile, k.shared_storage, k.rows}).second)
      return;
    auto pc = pub.find({env, k.rows});
    if (pc == pub.end()) return;
    Stat ps = publishedStat(pc->second, m.column == "downtime_study_ms");
    o << "| " << profileLabel(k.profile, k.shared_storage) << " | *published (study, " << env
      << "), not measured here* | " << k.rows << " | — | " << ps.n << " | " << shown(ps.mean, true) << " | "
      << shown(ps.p50, true) << " | " << shown(ps.p95, true) << " |" << (m.ratio ? " |" : "") << "\n";
  };
  const CellKey* group = nullptr;
  auto sameGroup = [](const CellKey& a, const CellKey& b) {
    return a.profile == b.profile && a.shared_storage == b.shared_storage && a.state_mb == b.state_mb &&
           a.rows == b.rows;
  };
  for (const auto& c : cells) {
    auto it = c.metrics.find(m.column);
    if (it == c.metrics.end() || it->second.n == 0) continue;
    if (group != nullptr && !sameGroup(*group, c.key)) publishedRow(*group);
    group = &c.key;
    const Stat& s = it->second;
    o << "| " << profileLabel(c.key.profile, c.key.shared_storage) << " | " << c.key.method << " | "
      << c.key.rows << " | " << c.key.state_mb << " | " << s.n << " | " << shown(s.mean, m.seconds) << " | "
      << shown(s.p50, m.seconds) << " | " << shown(s.p95, m.seconds) << " |";
    if (m.ratio) {
      CellKey tk = c.key;
      tk.method = "thesis";
      const CellSummary* t = findCell(cells, tk);
      auto tm = t ? t->metrics.find(m.column) : c.metrics.end();
      if (t && tm != t->metrics.end() && tm->second.n > 0 && s.mean > 0) {
        o << " " << fixed(tm->second.mean / s.mean, 2) << " |";
      } else {
        o << " — |";
      }
    }
    o << "\n";
  }
  if (group != nullptr) publishedRow(*group);
  return o.str() + "\n";
}

std::string runsTable(const std::vector<CellSummary>& cells) {
  std::ostringstream o;
  o << "## Runs, sessions and bytes\n\n"
       "Session kept: the curl session logged in before the move is still logged in after it (LMF_04); "
       "browser: the Chromium check (with --browser). Bytes are means over the ok runs, in MB (10^6).\n\n"
       "| profile | method | rows | state MB | ok | failed | interrupted | session kept | browser kept | "
       "moved MB | checkpoint MB | last delta MB |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  auto mb = [](const CellSummary& c, std::string_view col) {
    auto it = c.metrics.find(col);
    return it == c.metrics.end() || it->second.n == 0 ? std::string("—") : fixed(it->second.mean / 1e6, 1);
  };
  for (const auto& c : cells) {
    o << "| " << profileLabel(c.key.profile, c.key.shared_storage) << " | " << c.key.method << " | "
      << c.key.rows << " | " << c.key.state_mb << " | " << c.ok << " | " << c.failed << " | " << c.interrupted
      << " | "
      << (c.ok > 0 ? std::to_string(c.session_kept) + "/" + std::to_string(c.ok) + " (" +
                         fixed(static_cast<double>(c.session_kept) / static_cast<double>(c.ok), 2) + ")"
                   : "—")
      << " | "
      << (c.browser_checked > 0 ? std::to_string(c.browser_kept) + "/" + std::to_string(c.browser_checked)
                                : "not checked")
      << " | " << mb(c, "bytes_moved") << " | " << mb(c, "checkpoint_bytes") << " | "
      << mb(c, "last_delta_bytes") << " |\n";
  }
  return o.str() + "\n";
}

std::string problemsTable(const std::vector<RunRow>& rows) {
  std::map<std::string, const RunRow*> last;
  for (const auto& r : rows) last[attemptKey(r)] = &r;
  std::vector<const RunRow*> bad;
  for (const auto& [id, r] : last)
    if (r->get("status") != kStatusOk) bad.push_back(r);
  if (bad.empty()) return "";
  std::sort(bad.begin(), bad.end(), [](const RunRow* a, const RunRow* b) {
    return std::pair(a->number("seq").value_or(0), a->number("attempt").value_or(0)) <
           std::pair(b->number("seq").value_or(0), b->number("attempt").value_or(0));
  });
  std::ostringstream o;
  o << "## Runs that failed or were interrupted\n\n"
       "Not in the figures above. A failed run is a result of its method and is not retried; an interrupted "
       "one (the bench stopped during it) was run again as the next attempt.\n\n"
       "| seq | attempt | method | rows | state MB | run | direction | status | error |\n"
       "|---|---|---|---|---|---|---|---|---|\n";
  for (const auto* r : bad) {
    std::string status = r->get("status") == kStatusStarted ? "unfinished" : r->get("status");
    std::string error = r->get("error");
    std::replace(error.begin(), error.end(), '|', '/');
    o << "| " << r->get("seq") << " | " << r->get("attempt") << " | " << r->get("method") << " | "
      << r->get("rows") << " | " << r->get("state_mb") << " | " << r->get("run") << " | "
      << r->get("direction") << " | " << status << " | " << error << " |\n";
  }
  return o.str() + "\n";
}

// The data file and the `plot` command of one gnuplot chart, one data block per series.
class SeriesPlot {
 public:
  explicit SeriesPlot(std::string name) : name_(std::move(name)) {}
  // A series: `rows` (lines of numbers) as the next data block, drawn `how` ("using 1:2
  // with lines lw 2 ...") under `label`.
  void add(const std::string& label, const std::string& how, const std::string& rows) {
    data_ << "# " << label << "\n" << rows << "\n\n";
    plot_ << (count_ == 0 ? "plot " : ", \\\n     ") << "'" << name_ << ".dat' index " << count_ << " " << how
          << " title " << quoteGp(label);
    ++count_;
  }
  [[nodiscard]] int count() const { return count_; }
  [[nodiscard]] std::string data() const { return data_.str(); }
  [[nodiscard]] std::string command() const { return plot_.str(); }

 private:
  std::string name_;
  std::ostringstream data_, plot_;
  int count_ = 0;
};

// "set xtics (x1, x2, ...)": a tic at every value drawn.
std::string xticsAt(const std::set<int>& xs) {
  std::string out = "set xtics (";
  bool first = true;
  for (int x : xs) {
    out += (first ? "" : ", ") + std::to_string(x);
    first = false;
  }
  return out + ")";
}

// A chart's files (plots/NAME.dat, plots/NAME.gp) and its entry in summary.md's list.
void addPlot(const std::string& name, const std::string& title, std::string data, std::string gp,
             std::vector<ReportFile>& files, std::vector<std::pair<std::string, std::string>>& plots) {
  files.push_back({"plots/" + name + ".dat", std::move(data)});
  files.push_back({"plots/" + name + ".gp", std::move(gp)});
  plots.emplace_back(name, title);
}

// Downtime (or another time metric) against rows: a line per method, the study's series dashed.
void rowsPlot(const Group& g, const MetricInfo& m, const std::vector<CellSummary>& cells,
              const std::vector<std::string>& methods, const std::vector<PublishedRun>& published,
              std::vector<ReportFile>& files, std::vector<std::pair<std::string, std::string>>& plots) {
  std::string name = std::string(m.column.substr(0, m.column.size() - 3)) + "-vs-rows-" +
                     profileSlug(g.profile, g.shared) + "-state" + std::to_string(g.state_mb);
  SeriesPlot chart(name);
  std::set<int> xs;
  auto block = [&](const std::string& label, const std::string& style,
                   const std::vector<std::array<double, 4>>& pts) {
    if (pts.empty()) return;
    std::ostringstream rows;
    for (const auto& p : pts) rows << p[0] << " " << p[1] << " " << p[2] << " " << p[3] << "\n";
    chart.add(label, "using 1:2:3:4 with yerrorlines " + style, rows.str());
  };
  for (const auto& method : methods) {
    std::vector<std::array<double, 4>> pts;
    for (const auto& c : cells) {
      if (c.key.method != method || c.key.profile != g.profile || c.key.shared_storage != g.shared ||
          c.key.state_mb != g.state_mb)
        continue;
      auto it = c.metrics.find(m.column);
      if (it == c.metrics.end() || it->second.n == 0 || it->second.mean <= 0) continue;
      const Stat& s = it->second;
      pts.push_back(
          {static_cast<double>(c.key.rows), s.mean / 1000, std::max(s.min, 1.0) / 1000, s.max / 1000});
      xs.insert(c.key.rows);
    }
    block(method + " (measured)", "lw 2 pt 7 ps 0.8 lc rgb '" + colorOf(method) + "'", pts);
  }
  if (chart.count() == 0) return;
  std::string env = publishedEnvironment(g.profile, g.shared);
  if (m.published && !env.empty()) {
    std::vector<std::array<double, 4>> pts;
    for (const auto& [key, runs] : publishedByCell(published)) {
      if (key.first != env) continue;
      Stat s = publishedStat(runs, m.column == "downtime_study_ms");
      pts.push_back({static_cast<double>(key.second), s.mean / 1000, s.min / 1000, s.max / 1000});
      xs.insert(key.second);
    }
    block("published (study, " + env + "), not measured here",
          "lw 2 dt 2 pt 6 ps 0.8 lc rgb '" + std::string(kPublishedColor) + "'", pts);
  }
  std::string title = std::string(m.title.substr(0, m.title.find(" (s)"))) + " vs rows — " +
                      profileLabel(g.profile, g.shared) + ", state " + std::to_string(g.state_mb) + " MB";
  std::ostringstream gp;
  gp << gpHeader(name, title, 900, 560) << "set logscale xy\n"
     << "set xrange [" << *xs.begin() * 0.6 << ":" << *xs.rbegin() * 1.6 << "]\n"
     << xticsAt(xs) << "\nset format y '%g'\nset xlabel 'rows in the users table (log scale)'\n"
     << "set ylabel 'seconds (log scale): mean, bars min–max of the runs'\nset key below\nset bars small\n"
     << chart.command() << "\n";
  addPlot(name, title, chart.data(), gp.str(), files, plots);
}

// A time metric against the service's memory (--state-mb) for one profile and row count: a
// line per method, and the time the profile's link needs to carry that memory once.
void statePlot(const std::string& profile, bool shared, int rows, const MetricInfo& m,
               const std::vector<CellSummary>& cells, const std::vector<std::string>& methods,
               std::vector<ReportFile>& files, std::vector<std::pair<std::string, std::string>>& plots) {
  std::string name = std::string(m.column.substr(0, m.column.size() - 3)) + "-vs-state-" +
                     profileSlug(profile, shared) + "-rows" + std::to_string(rows);
  SeriesPlot chart(name);
  std::set<int> xs;
  for (const auto& method : methods) {
    std::ostringstream block;
    int points = 0;
    for (const auto& c : cells) {
      if (c.key.method != method || c.key.profile != profile || c.key.shared_storage != shared ||
          c.key.rows != rows)
        continue;
      auto it = c.metrics.find(m.column);
      if (it == c.metrics.end() || it->second.n == 0) continue;
      const Stat& st = it->second;
      block << c.key.state_mb << " " << st.mean / 1000 << " " << st.min / 1000 << " " << st.max / 1000
            << "\n";
      xs.insert(c.key.state_mb);
      ++points;
    }
    if (points == 0) continue;
    chart.add(method + " (measured)",
              "using 1:2:3:4 with yerrorlines lw 2 pt 7 ps 0.8 lc rgb '" + colorOf(method) + "'",
              block.str());
  }
  const double mbit = profileLinkMbit(profile);
  if (xs.size() < 2 || mbit <= 0) return;
  // MB of state are MiB (gen-seed.sh: 256 rows of 4 KiB each).
  std::string link = "the link alone: state ÷ " + fixed(mbit, 0) + " Mbit/s";
  std::ostringstream line;
  for (int x : xs) line << x << " " << fixed(x * 1048576.0 * 8 / (mbit * 1e6), 3) << "\n";
  chart.add(link, "using 1:2 with lines lw 2 dt 3 lc rgb '" + std::string(kPublishedColor) + "'", line.str());
  std::string title = std::string(m.title.substr(0, m.title.find(" (s)"))) + " vs memory — " +
                      profileLabel(profile, shared) + ", " + std::to_string(rows) + " rows";
  std::ostringstream gp;
  gp << gpHeader(name, title, 900, 560) << "set xrange [" << -0.04 * *xs.rbegin() << ":"
     << 1.04 * *xs.rbegin() << "]\nset yrange [0:*]\n"
     << xticsAt(xs) << "\nset xlabel 'database state held in memory, MB (--state-mb)'\n"
     << "set ylabel 'seconds: mean, bars min–max of the runs'\nset key top left\nset bars small\n"
     << chart.command() << "\n";
  addPlot(name, title, chart.data(), gp.str(), files, plots);
}

// One method's phases stacked per cell (exclusive time: overlaps counted once).
void phasePlot(const std::string& method, const std::string& profile, bool shared,
               const std::vector<CellSummary>& cells, std::vector<ReportFile>& files,
               std::vector<std::pair<std::string, std::string>>& plots) {
  std::vector<const CellSummary*> mine;
  std::vector<std::string> order;
  std::set<int> states;
  for (const auto& c : cells) {
    if (c.key.method != method || c.key.profile != profile || c.key.shared_storage != shared || c.ok == 0)
      continue;
    mine.push_back(&c);
    states.insert(c.key.state_mb);
    for (const auto& p : c.phase_order)
      if (std::find(order.begin(), order.end(), p) == order.end()) order.push_back(p);
  }
  if (mine.empty() || order.empty()) return;
  std::string name = "phases-" + method + "-" + profileSlug(profile, shared);
  std::ostringstream data;
  data << "\"cell\"";
  for (const auto& p : order) data << " " << quoteGp(p);
  data << "\n";
  for (const auto* c : mine) {
    std::string label = std::to_string(c->key.rows) + " rows";
    if (states.size() > 1) label += ", " + std::to_string(c->key.state_mb) + " MB";
    data << quoteGp(label);
    for (const auto& p : order) {
      auto it = c->phase_ms.find(p);
      data << " " << fixed(it == c->phase_ms.end() ? 0.0 : it->second / 1000.0, 3);
    }
    data << "\n";
  }
  std::string title = method + ": where the time goes — " + profileLabel(profile, shared);
  std::ostringstream gp;
  gp << gpHeader(name, title, 900, 560) << "set style data histograms\nset style histogram rowstacked\n"
     << "set style fill solid 0.9 border rgb 'white'\nset boxwidth 0.6\nset yrange [0:*]\n"
     << "set key outside right top vertical\n"
     << "set ylabel 'seconds (mean of the ok runs; overlapping phases counted once)'\n"
     << "plot for [i=2:" << order.size() + 1 << "] '" << name
     << ".dat' using i:xtic(1) title columnheader(i)\n";
  addPlot(name, title, data.str(), gp.str(), files, plots);
}

// The probe's latency across one migration: the ok run with the median client downtime.
void timelinePlot(const std::string& method, const std::string& profile, bool shared,
                  const std::vector<RunRow>& rows,
                  const std::function<std::optional<std::string>(const std::string&)>& read_timeline,
                  std::vector<ReportFile>& files, std::vector<std::pair<std::string, std::string>>& plots) {
  std::vector<const RunRow*> candidates;
  for (const auto& r : rows) {
    if (r.get("status") != kStatusOk || r.get("method") != method || r.get("profile") != profile ||
        r.isTrue("shared_storage") != shared || r.get("timeline").empty() || !r.number("down_unix_ms") ||
        !r.number("up_unix_ms") || !r.number("client_downtime_ms"))
      continue;
    candidates.push_back(&r);
  }
  if (candidates.empty()) return;
  std::stable_sort(candidates.begin(), candidates.end(), [](const RunRow* a, const RunRow* b) {
    return *a->number("client_downtime_ms") < *b->number("client_downtime_ms");
  });
  const RunRow* pick = nullptr;
  std::optional<std::string> csv;
  // The median first, then its neighbours, until one has its timeline file.
  std::size_t mid = (candidates.size() - 1) / 2;
  for (std::size_t d = 0; d < candidates.size() && !csv; ++d) {
    for (std::size_t i : {mid + d, mid - std::min(mid, d)}) {
      if (i >= candidates.size() || csv) continue;
      csv = read_timeline(candidates[i]->get("timeline"));
      if (csv) pick = candidates[i];
    }
  }
  if (!pick) return;
  const double down = *pick->number("down_unix_ms");
  const double up_s = (*pick->number("up_unix_ms") - down) / 1000.0;
  std::string data = timelinePlotData(*csv, down);
  auto failed_at = data.find("# failed");
  auto failed_nl = failed_at == std::string::npos ? std::string::npos : data.find('\n', failed_at);
  const bool any_failed = failed_nl != std::string::npos && failed_nl + 1 < data.size();
  std::string name = "timeline-" + method + "-" + profileSlug(profile, shared);
  std::string title = method + ": probe latency across one migration (run " + pick->get("seq") + ": " +
                      pick->get("rows") + " rows, state " + pick->get("state_mb") + " MB, " +
                      pick->get("direction") + "; client-observed downtime " +
                      fixed(*pick->number("client_downtime_ms") / 1000.0, 2) + " s, the median run)";
  std::ostringstream gp;
  gp << gpHeader(name, title, 1000, 500) << "set logscale y\nset format y '%g'\n"
     << "set xlabel 'seconds from the freeze (DOWN)'\n"
     << "set ylabel 'latency of each probe request, ms (log scale)'\n"
     << "set object 1 rect from 0, graph 0 to " << fixed(std::max(up_s, 0.001), 3)
     << ", graph 1 behind fillcolor rgb '#f4cccc' fillstyle solid 0.7 noborder\n"
     << "set label 1 'server-side downtime (freeze → restored): " << fixed(up_s, 2)
     << " s' at first 0, graph 0.96 left offset 0.5,0\n"
     << "set key below\n"
     << "plot '" << name << ".dat' index 0 using 1:2 with points pt 7 ps 0.25 lc rgb '#1f77b4' title "
     << "'answered (thinned: every slow answer kept)'";
  if (any_failed) {
    gp << ", \\\n     '' index 1 using 1:2 with points pt 2 ps 0.6 lc rgb '#d62728' title "
       << "'failed (drawn at the time it was given up)'";
  }
  gp << "\n";
  addPlot(name, title, std::move(data), gp.str(), files, plots);
}

}  // namespace

std::string timelinePlotData(std::string_view timeline_csv, double down_unix_ms, std::size_t max_ok) {
  struct Point {
    double t, latency;
  };
  std::vector<Point> ok, failed;
  std::size_t pos = 0;
  bool header = true;
  while (pos < timeline_csv.size()) {
    auto nl = timeline_csv.find('\n', pos);
    std::string line(
        timeline_csv.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos));
    pos = nl == std::string_view::npos ? timeline_csv.size() : nl + 1;
    if (header) {  // send_ms,send_unix_ms,latency_ms,status,kind,session
      header = false;
      continue;
    }
    std::vector<std::string> f;
    std::stringstream ss(line);
    for (std::string cell; std::getline(ss, cell, ',');) f.push_back(cell);
    if (f.size() < 5) continue;
    char* e1 = nullptr;
    char* e2 = nullptr;
    double send = std::strtod(f[1].c_str(), &e1);
    double lat = std::strtod(f[2].c_str(), &e2);
    if (e1 == f[1].c_str() || e2 == f[2].c_str()) continue;
    Point p{(send - down_unix_ms) / 1000.0, std::max(lat, 0.05)};
    (f[4] == "ok" ? ok : failed).push_back(p);
  }
  std::vector<double> lats;
  lats.reserve(ok.size());
  for (const auto& p : ok) lats.push_back(p.latency);
  const double median = describe(lats).p50;
  std::size_t normal = 0;
  for (const auto& p : ok)
    if (p.latency <= 4 * median) ++normal;
  const std::size_t step = max_ok == 0 || normal <= max_ok ? 1 : (normal + max_ok - 1) / max_ok;
  std::ostringstream o;
  o << "# ok: seconds from DOWN, latency ms (" << ok.size() << " answered";
  if (step > 1) o << "; 1 in " << step << " normal answers shown";
  o << ")\n";
  std::size_t k = 0;
  for (const auto& p : ok) {
    bool slow = p.latency > 4 * median;
    if (slow || k++ % step == 0) o << fixed(p.t, 3) << " " << fixed(p.latency, 3) << "\n";
  }
  o << "\n\n# failed: seconds from DOWN, ms until given up (" << failed.size() << ")\n";
  for (const auto& p : failed) o << fixed(p.t, 3) << " " << fixed(p.latency, 3) << "\n";
  return o.str();
}

std::vector<ReportFile> buildReport(
    const ReportInput& input,
    const std::function<std::optional<std::string>(const std::string&)>& read_timeline) {
  auto cells = summarizeRuns(input.rows, input.method_order);
  std::vector<std::string> methods = input.method_order;
  for (const auto& c : cells)
    if (std::find(methods.begin(), methods.end(), c.key.method) == methods.end())
      methods.push_back(c.key.method);

  std::vector<ReportFile> files;
  std::vector<std::pair<std::string, std::string>> plots;
  std::set<Group> groups;
  std::set<std::pair<std::string, bool>> profiles;
  for (const auto& c : cells) {
    groups.insert({c.key.profile, c.key.shared_storage, c.key.state_mb});
    profiles.insert({c.key.profile, c.key.shared_storage});
  }
  for (const auto& g : groups) {
    for (const auto& m : kMetricInfo) {
      if (m.column == "downtime_study_ms" || m.column == "client_downtime_ms" ||
          m.column == "migration_study_ms")
        rowsPlot(g, m, cells, methods, input.published, files, plots);
    }
  }
  std::set<std::tuple<std::string, bool, int>> row_groups;
  for (const auto& c : cells) row_groups.insert({c.key.profile, c.key.shared_storage, c.key.rows});
  for (const auto& [profile, shared, rows] : row_groups) {
    for (const auto& m : kMetricInfo) {
      if (m.column == "downtime_study_ms" || m.column == "migration_study_ms")
        statePlot(profile, shared, rows, m, cells, methods, files, plots);
    }
  }
  for (const auto& [profile, shared] : profiles) {
    for (const auto& method : methods) phasePlot(method, profile, shared, cells, files, plots);
    for (const auto& method : methods)
      timelinePlot(method, profile, shared, input.rows, read_timeline, files, plots);
  }

  std::size_t ok = 0, failed = 0, interrupted = 0;
  for (const auto& c : cells) {
    ok += c.ok;
    failed += c.failed;
    interrupted += c.interrupted;
  }
  std::vector<double> loads;
  for (const auto& r : input.rows)
    if (auto l = r.number("load_1m"); l && r.get("status") == kStatusStarted) loads.push_back(*l);
  Stat load = describe(loads);

  std::string plan = input.plan_text;
  if (plan.empty()) {
    std::set<std::string> profile_names;
    std::set<int> row_counts, states, videos;
    for (const auto& r : input.rows) {
      profile_names.insert(profileLabel(r.get("profile"), r.isTrue("shared_storage")));
      row_counts.insert(static_cast<int>(r.number("rows").value_or(0)));
      states.insert(static_cast<int>(r.number("state_mb").value_or(0)));
      videos.insert(static_cast<int>(r.number("video_mb").value_or(0)));
    }
    auto list = [](const auto& items) {
      std::string s;
      for (const auto& i : items) {
        std::ostringstream o;
        o << i;
        s += (s.empty() ? "" : ", ") + o.str();
      }
      return s;
    };
    plan = "From runs.csv: profile " + list(profile_names) + "; methods " + list(methods) + "; rows " +
           list(row_counts) + "; state " + list(states) + " MB; video " + list(videos) + " MB.";
  }
  std::ostringstream md;
  md << "# ferry bench — summary\n\n"
     << plan << "\n\n"
     << "Runs in runs.csv: " << ok << " ok, " << failed << " failed, " << interrupted << " interrupted.";
  if (load.n > 0) {
    md << " The machine's 1-minute load average at the runs' starts: " << fixed(load.min, 1) << "–"
       << fixed(load.max, 1) << " (median " << fixed(load.p50, 1) << "); every lab host shares its cores, so "
       << "load inflates every figure.";
  }
  md << "\n\nFigures are over the ok runs of each cell (method × profile × rows × state): mean, and p50/p95 "
        "by nearest rank. \"thesis ÷ method\" is the thesis method's mean over this method's mean, both "
        "measured in this directory's runs. Rows in *italics* are the study's published runs "
        "(bench/reference/thesis-results.csv): published, not measured here, on other machines.\n\n";
  for (const auto& m : kMetricInfo) md << metricTable(m, cells, input.published);
  md << runsTable(cells);
  md << problemsTable(input.rows);
  if (!plots.empty()) {
    md << "## Plots\n\n";
    for (const auto& [name, title] : plots)
      md << "### " << title << "\n\n![" << title << "](plots/" << name << ".svg)\n\n";
  }
  files.insert(files.begin(), ReportFile{"summary.md", md.str()});
  return files;
}

Status writeReport(const std::filesystem::path& dir, const ReportInput& input, bool run_gnuplot) {
  auto files = buildReport(input, [&](const std::string& rel) -> std::optional<std::string> {
    auto text = readFile(dir / rel);
    if (!text) return std::nullopt;
    return std::move(*text);
  });
  std::error_code ec;
  std::filesystem::create_directories(dir / "plots", ec);
  if (ec) return makeError("cannot create " + (dir / "plots").string() + ": " + ec.message());
  for (const auto& f : files) FERRY_TRY(writeFileAtomic(dir / f.name, f.content));
  if (!run_gnuplot) return okStatus();
  if (findInPath("gnuplot").empty()) {
    return makeError("gnuplot is missing: summary.md is written, the plots are not",
                     "apt-get install gnuplot-nox (deploy/packages/bench.txt), then 'ferry bench --out " +
                         dir.string() + " --report-only'");
  }
  std::string failures;
  for (const auto& f : files) {
    if (f.name.size() < 3 || f.name.substr(f.name.size() - 3) != ".gp") continue;
    ProcessOptions po;
    po.cwd = (dir / "plots").string();
    po.timeout = std::chrono::seconds(60);
    auto r = runProcess({"gnuplot", std::filesystem::path(f.name).filename().string()}, po);
    if (!r || !r->success()) {
      std::string why = !r ? r.error().message() : r->timed_out ? "timed out after 60 s" : r->err;
      auto nl = why.find_last_not_of("\n ");
      failures += (failures.empty() ? "" : "; ") + f.name + ": " +
                  why.substr(0, nl == std::string::npos ? 0 : nl + 1);
    }
  }
  if (!failures.empty()) {
    return makeError(
        "gnuplot failed on " + failures,
        "the data and scripts are in " + (dir / "plots").string() + " (run gnuplot NAME.gp there)");
  }
  return okStatus();
}

}  // namespace ferry::bench
