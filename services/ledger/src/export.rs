//! The journal (台账流水) as an Excel workbook: bilingual headers, times as real dates in Beijing
//! time, frozen header row, filters.

use std::collections::HashMap;

use rust_xlsxwriter::{Format, Workbook, XlsxError};
use uuid::Uuid;

use crate::store::JournalRow;

pub const HEADERS: [&str; 13] = [
    "序号 position",
    "类型 kind",
    "台账编号 item_id",
    "区 district",
    "街道 street",
    "街道名称 street name",
    "类别 category",
    "点位 point_id",
    "时间(北京时间) at",
    "操作人 actor",
    "诉求编号 complaint_id",
    "销账申请 closure_id",
    "销账类型 write_off_kind",
];

pub fn journal_xlsx(
    rows: &[JournalRow],
    street_names: &HashMap<&str, &str>,
) -> Result<Vec<u8>, XlsxError> {
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    sheet.set_name("台账流水")?;
    let bold = Format::new().set_bold();
    let when = Format::new().set_num_format("yyyy-mm-dd hh:mm:ss");
    for (col, h) in HEADERS.iter().enumerate() {
        sheet.write_string_with_format(0, col as u16, *h, &bold)?;
    }
    let text = |u: Option<Uuid>| u.map(|u| u.to_string()).unwrap_or_default();
    for (i, r) in rows.iter().enumerate() {
        let row = i as u32 + 1;
        sheet.write_number(row, 0, r.position as f64)?;
        sheet.write_string(row, 1, &r.kind)?;
        sheet.write_string(row, 2, r.item_id.to_string())?;
        sheet.write_string(row, 3, &r.district)?;
        sheet.write_string(row, 4, &r.street)?;
        sheet.write_string(
            row,
            5,
            street_names.get(r.street.as_str()).copied().unwrap_or(""),
        )?;
        sheet.write_string(row, 6, &r.category)?;
        sheet.write_string(row, 7, r.point_id.to_string())?;
        let beijing = (r.at + chrono::Duration::hours(8)).naive_utc();
        sheet.write_datetime_with_format(row, 8, beijing, &when)?;
        sheet.write_string(row, 9, &r.actor)?;
        sheet.write_string(row, 10, text(r.complaint_id))?;
        sheet.write_string(row, 11, text(r.closure_id))?;
        sheet.write_string(row, 12, r.write_off_kind.as_deref().unwrap_or(""))?;
    }
    sheet.set_freeze_panes(1, 0)?;
    sheet.autofilter(0, 0, rows.len() as u32, HEADERS.len() as u16 - 1)?;
    for (col, width) in [8, 12, 38, 10, 12, 14, 26, 38, 20, 20, 38, 38, 14]
        .iter()
        .enumerate()
    {
        sheet.set_column_width(col as u16, *width as f64)?;
    }
    book.save_to_buffer()
}

pub const CSV_HEADER: [&str; 12] = [
    "position",
    "kind",
    "item_id",
    "district",
    "street",
    "category",
    "point_id",
    "at",
    "actor",
    "complaint_id",
    "closure_id",
    "write_off_kind",
];

/// The journal as CSV for Excel: UTF-8 with a byte-order mark, CRLF lines.
pub fn journal_csv(rows: &[JournalRow]) -> String {
    let mut out = String::from("\u{feff}");
    out.push_str(&CSV_HEADER.join(","));
    out.push_str("\r\n");
    let opt = |u: Option<Uuid>| u.map(|u| u.to_string()).unwrap_or_default();
    for r in rows {
        let cells = [
            r.position.to_string(),
            r.kind.clone(),
            r.item_id.to_string(),
            r.district.clone(),
            r.street.clone(),
            r.category.clone(),
            r.point_id.to_string(),
            r.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            r.actor.clone(),
            opt(r.complaint_id),
            opt(r.closure_id),
            r.write_off_kind.clone().unwrap_or_default(),
        ];
        out.push_str(
            &cells
                .iter()
                .map(|c| csv_cell(c))
                .collect::<Vec<_>>()
                .join(","),
        );
        out.push_str("\r\n");
    }
    out
}

/// RFC 4180 quoting; a leading formula character (or TAB, CR, which spreadsheets skip before one)
/// is neutralised so a spreadsheet shows text.
fn csv_cell(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_that_a_spreadsheet_would_run_are_text() {
        for formula in ["=1+1", "+1", "-1", "@SUM(A1)", "\t=1+1", "\r=1+1"] {
            assert!(
                csv_cell(formula).trim_start_matches('"').starts_with('\''),
                "{formula:?}"
            );
        }
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("九棵树"), "九棵树");
    }
}
