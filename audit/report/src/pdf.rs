//! The PDF report: the HTML report's sections as text tables on A4 pages, written with
//! `pdf-writer` (typst's PDF serializer: no fonts read, no network, four small
//! dependencies). Text uses the PDF standard fonts (Helvetica, Courier), which every reader
//! has, so nothing is embedded; characters outside Latin-1 print as `?` (the JSON report
//! keeps them exactly). Long cells are cut with `~`; the JSON report has every value whole.
use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str, TextStr};

use crate::Error;
use crate::summary::Report;

const PAGE_W: f32 = 595.0;
const PAGE_H: f32 = 842.0;
const MARGIN: f32 = 40.0;
const BODY: f32 = 7.5;
const LEADING: f32 = 10.0;
/// Courier's advance is 600/1000 em.
const CHARS_PER_LINE: usize = ((PAGE_W - 2.0 * MARGIN) / (BODY * 0.6)) as usize;
const CHART_H: f32 = 110.0;

const HELVETICA_BOLD: Name<'static> = Name(b"F1");
const COURIER: Name<'static> = Name(b"F2");

/// What goes on the pages, in order.
enum Item {
    Title(String),
    Heading(String),
    Line(String),
    Chart(Vec<(String, u64, u64)>),
}

/// Renders `report` as a PDF document.
pub fn render(report: &Report) -> Result<Vec<u8>, Error> {
    Ok(write_pdf(&layout(report)))
}

fn layout(r: &Report) -> Vec<Item> {
    let mut items = Vec::new();
    let mut text = |s: String| items.push(Item::Line(s));
    text(format!(
        "Period: {} ({} records{}). Generated {}.",
        r.period.text,
        r.period.records,
        match (&r.period.first_record, &r.period.last_record) {
            (Some(a), Some(b)) => format!(", {a} to {b}"),
            _ => String::new(),
        },
        r.generated
    ));
    let mut items = {
        let mut v = vec![Item::Title("Airlock audit report".into())];
        v.append(&mut items);
        v
    };
    let v = &r.verification;
    items.push(Item::Heading("Verification".into()));
    items.push(Item::Line(format!("Verified before reporting: {}", v.line)));
    items.push(Item::Line(format!("Source: {}", v.source)));
    items.push(Item::Line(format!(
        "Head hash: {}",
        v.head.as_deref().unwrap_or("none (empty log)")
    )));
    items.push(Item::Line(match v.since_checkpoint {
        Some(size) => format!("Auditor's checkpoint: size {size}; the log extends it."),
        None => "Auditor's checkpoint: none given (--since-checkpoint).".into(),
    }));
    items.push(Item::Line(format!(
        "Signing key: {} (key ID {}), public key SHA-256 {}",
        v.key.name, v.key.key_id, v.key.fingerprint
    )));

    let q = &r.requests;
    items.push(Item::Heading("Requests".into()));
    items.push(Item::Line(format!(
        "Inference requests {}; denied {}; tokens in {}; tokens out {}.",
        q.total, q.denied, q.tokens_in, q.tokens_out
    )));
    if !q.per_day.is_empty() {
        items.push(Item::Chart(
            q.per_day
                .iter()
                .map(|d| (d.day.clone(), d.requests, d.denied))
                .collect(),
        ));
    }
    table(
        &mut items,
        &["Day (UTC)", "Requests", "Denied"],
        q.per_day
            .iter()
            .map(|d| vec![d.day.clone(), d.requests.to_string(), d.denied.to_string()]),
    );
    items.push(Item::Heading("Per identity".into()));
    table(
        &mut items,
        &[
            "Subject",
            "Roles",
            "Requests",
            "Denied",
            "Tok in",
            "Tok out",
            "Fingerprint",
        ],
        q.per_identity.iter().map(|i| {
            vec![
                i.subject.clone(),
                i.roles.join(","),
                i.requests.to_string(),
                i.denied.to_string(),
                i.tokens_in.to_string(),
                i.tokens_out.to_string(),
                i.fingerprint.clone(),
            ]
        }),
    );
    items.push(Item::Heading("Per role".into()));
    table(
        &mut items,
        &["Role", "Certificates", "Requests"],
        q.per_role.iter().map(|x| {
            vec![
                x.role.clone(),
                x.identities.to_string(),
                x.requests.to_string(),
            ]
        }),
    );
    items.push(Item::Heading("Per model and version".into()));
    table(
        &mut items,
        &[
            "Model", "Version", "Requests", "Tok in", "Tok out", "SHA-256",
        ],
        q.per_model.iter().map(|m| {
            vec![
                m.name.clone(),
                m.version.clone(),
                m.requests.to_string(),
                m.tokens_in.to_string(),
                m.tokens_out.to_string(),
                m.sha256.clone(),
            ]
        }),
    );
    items.push(Item::Heading("Refusals".into()));
    table(
        &mut items,
        &["Status", "Reason", "Count"],
        r.refusals
            .iter()
            .map(|x| vec![x.status.clone(), x.reason.clone(), x.count.to_string()]),
    );
    items.push(Item::Heading("Access denied".into()));
    let opt = |s: &Option<String>| s.clone().unwrap_or_default();
    table(
        &mut items,
        &[
            "Seq",
            "Time (UTC)",
            "Subject",
            "Request",
            "Status",
            "Reason",
        ],
        r.denials.iter().map(|d| {
            vec![
                d.seq.to_string(),
                d.time.clone(),
                opt(&d.subject),
                format!("{} {}", opt(&d.method), opt(&d.route)),
                opt(&d.status),
                opt(&d.reason),
            ]
        }),
    );
    items.push(Item::Heading("Erasures (GDPR Art. 17)".into()));
    table(
        &mut items,
        &["Seq", "Time (UTC)", "Subject (SHA-256)", "By", "Keys"],
        r.erasures.iter().map(|e| {
            vec![
                e.seq.to_string(),
                e.time.clone(),
                e.subject_sha256.clone(),
                e.by.clone(),
                opt(&e.keys),
            ]
        }),
    );
    items.push(Item::Heading("Retention (expired key epochs)".into()));
    table(
        &mut items,
        &["Seq", "Time (UTC)", "Before epoch", "Keys"],
        r.retention.iter().map(|e| {
            vec![
                e.seq.to_string(),
                e.time.clone(),
                opt(&e.before_epoch),
                opt(&e.keys),
            ]
        }),
    );
    items.push(Item::Heading("Models".into()));
    table(
        &mut items,
        &[
            "Seq",
            "Time (UTC)",
            "Event",
            "Model",
            "Version",
            "Detail",
            "By",
        ],
        r.model_events.iter().map(|m| {
            vec![
                m.seq.to_string(),
                m.time.clone(),
                m.kind.clone(),
                opt(&m.name),
                opt(&m.version),
                opt(&m.detail),
                m.by.clone(),
            ]
        }),
    );
    items.push(Item::Heading("Policy loads".into()));
    table(
        &mut items,
        &["Seq", "Time (UTC)", "Path", "Content", "SHA-256"],
        r.policy_loads.iter().map(|p| {
            vec![
                p.seq.to_string(),
                p.time.clone(),
                opt(&p.path),
                opt(&p.content),
                opt(&p.sha256),
            ]
        }),
    );
    items.push(Item::Heading(
        "Software installs, upgrades and rollbacks".into(),
    ));
    table(
        &mut items,
        &[
            "Seq",
            "Time (UTC)",
            "Action",
            "Version",
            "Binary SHA-256",
            "Kit MANIFEST",
        ],
        r.installs.iter().map(|i| {
            vec![
                i.seq.to_string(),
                i.time.clone(),
                i.action.clone(),
                opt(&i.version),
                opt(&i.binary_sha256),
                opt(&i.kit_manifest_sha256),
            ]
        }),
    );
    items.push(Item::Heading("Service starts and stops".into()));
    for s in &r.service {
        let status = match (&s.status, &s.error) {
            (Some(st), Some(e)) => format!("{st}: {e}"),
            (Some(st), None) => st.clone(),
            _ => String::new(),
        };
        items.push(Item::Line(format!(
            "seq {} {} {} {} {}",
            s.seq,
            s.time,
            s.event,
            status,
            s.version.as_deref().unwrap_or("")
        )));
        if s.event == "start" {
            items.push(Item::Line(format!(
                "    lockdown: {}",
                s.lockdown.as_deref().unwrap_or("not recorded")
            )));
        }
    }
    items.push(Item::Heading("Gaps in service time".into()));
    table(
        &mut items,
        &["From", "To", "Seconds", "Run before ended"],
        r.gaps.iter().map(|g| {
            vec![
                g.from.clone(),
                g.to.clone(),
                g.seconds.to_string(),
                if g.clean {
                    "recorded stop"
                } else {
                    "no stop recorded"
                }
                .into(),
            ]
        }),
    );
    items
}

/// A text table: columns as wide as their widest cell, the widest cut until the row fits.
fn table(items: &mut Vec<Item>, headers: &[&str], rows: impl Iterator<Item = Vec<String>>) {
    let rows: Vec<Vec<String>> = rows.collect();
    if rows.is_empty() {
        items.push(Item::Line("(none)".into()));
        return;
    }
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let budget = CHARS_PER_LINE.saturating_sub(2 * (widths.len() - 1));
    while widths.iter().sum::<usize>() > budget {
        let Some(widest) = widths.iter_mut().max() else {
            break;
        };
        if *widest <= 6 {
            break;
        }
        *widest -= 1;
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, &w)| fit(c, w))
            .collect::<Vec<_>>()
            .join("  ")
    };
    items.push(Item::Line(line(
        headers.iter().map(|h| h.to_string()).collect(),
    )));
    items.push(Item::Line(line(
        widths.iter().map(|&w| "-".repeat(w)).collect(),
    )));
    for row in rows {
        items.push(Item::Line(line(row)));
    }
}

/// `s` padded or cut (ending in `~`) to exactly `w` characters.
fn fit(s: &str, w: usize) -> String {
    let n = s.chars().count();
    if n <= w {
        format!("{s}{}", " ".repeat(w - n))
    } else {
        let mut cut: String = s.chars().take(w.saturating_sub(1)).collect();
        cut.push('~');
        cut
    }
}

/// Latin-1 bytes for the standard fonts' WinAnsi encoding (`?` for anything else).
fn win_ansi(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| match u32::from(c) {
            0x20..=0x7e | 0xa0..=0xff => c as u8,
            _ => b'?',
        })
        .collect()
}

/// Lays the items out on A4 pages and serializes the document.
fn write_pdf(items: &[Item]) -> Vec<u8> {
    let mut pages: Vec<Content> = Vec::new();
    let mut page = Content::new();
    let mut y = PAGE_H - MARGIN;
    let new_page = |page: &mut Content, y: &mut f32, pages: &mut Vec<Content>| {
        pages.push(std::mem::replace(page, Content::new()));
        *y = PAGE_H - MARGIN;
    };
    for item in items {
        let (font, size, before, height) = match item {
            Item::Title(_) => (HELVETICA_BOLD, 16.0, 0.0, 22.0),
            Item::Heading(_) => (HELVETICA_BOLD, 11.0, 8.0, 15.0),
            Item::Line(_) => (COURIER, BODY, 0.0, LEADING),
            Item::Chart(_) => (COURIER, BODY, 4.0, CHART_H + 16.0),
        };
        // A heading keeps at least three lines under it on its page.
        let keep = if matches!(item, Item::Heading(_)) {
            3.0 * LEADING
        } else {
            0.0
        };
        if y - before - height - keep < MARGIN {
            new_page(&mut page, &mut y, &mut pages);
        }
        y -= before + height;
        match item {
            Item::Title(t) | Item::Heading(t) | Item::Line(t) => {
                page.begin_text();
                page.set_font(font, size);
                page.next_line(MARGIN, y);
                page.show(Str(&win_ansi(t)));
                page.end_text();
            }
            Item::Chart(days) => draw_chart(&mut page, days, y),
        }
    }
    pages.push(page);

    let mut pdf = Pdf::new();
    let catalog = Ref::new(1);
    let tree = Ref::new(2);
    let bold = Ref::new(3);
    let mono = Ref::new(4);
    let info = Ref::new(5);
    let first = 6;
    let page_ids: Vec<Ref> = (0..pages.len())
        .map(|i| Ref::new(first + 2 * i as i32))
        .collect();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree)
        .kids(page_ids.iter().copied())
        .count(pages.len() as i32);
    pdf.document_info(info)
        .title(TextStr("Airlock audit report"))
        .producer(TextStr("airlock audit report"));
    for font in [(bold, &b"Helvetica-Bold"[..]), (mono, &b"Courier"[..])] {
        pdf.type1_font(font.0)
            .base_font(Name(font.1))
            .encoding_predefined(Name(b"WinAnsiEncoding"));
    }
    for (i, content) in pages.into_iter().enumerate() {
        let id = page_ids[i];
        let content_id = Ref::new(id.get() + 1);
        let mut p = pdf.page(id);
        p.media_box(Rect::new(0.0, 0.0, PAGE_W, PAGE_H));
        p.parent(tree);
        p.contents(content_id);
        let mut resources = p.resources();
        resources
            .fonts()
            .pair(HELVETICA_BOLD, bold)
            .pair(COURIER, mono);
        resources.finish();
        p.finish();
        pdf.stream(content_id, &content.finish());
    }
    pdf.finish()
}

/// Bars of requests (blue) and denials (red) per day in a box whose bottom is `y`.
fn draw_chart(page: &mut Content, days: &[(String, u64, u64)], y: f32) {
    let width = PAGE_W - 2.0 * MARGIN;
    let base = y + 14.0;
    let max = days.iter().map(|d| d.1.max(d.2)).max().unwrap_or(0).max(1) as f32;
    let slot = width / days.len() as f32;
    page.set_stroke_rgb(0.5, 0.5, 0.5);
    page.rect(MARGIN, base, width, CHART_H);
    page.stroke();
    for (i, (_, requests, denied)) in days.iter().enumerate() {
        let x = MARGIN + i as f32 * slot;
        let bar = |v: u64| v as f32 / max * (CHART_H - 4.0);
        page.set_fill_rgb(0.17, 0.36, 0.54);
        page.rect(x + slot * 0.1, base, slot * 0.8, bar(*requests));
        page.fill_nonzero();
        if *denied > 0 {
            page.set_fill_rgb(0.69, 0.19, 0.19);
            page.rect(x + slot * 0.3, base, slot * 0.4, bar(*denied));
            page.fill_nonzero();
        }
    }
    page.set_fill_rgb(0.0, 0.0, 0.0);
    let first = &days[0].0;
    let last = &days[days.len() - 1].0;
    let caption = format!(
        "Requests (blue) and denied (red) per day, {first} to {last}; top of the box = {}",
        max as u64
    );
    page.begin_text();
    page.set_font(COURIER, BODY);
    page.next_line(MARGIN, y + 2.0);
    page.show(Str(&win_ansi(&caption)));
    page.end_text();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_padded_or_cut_to_their_width() {
        assert_eq!(fit("abc", 5), "abc  ");
        assert_eq!(fit("abcdef", 4), "abc~");
        assert_eq!(win_ansi("é→x"), vec![0xe9, b'?', b'x']);
    }
}
