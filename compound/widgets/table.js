// TableWidget view: a <table> whose header cells sort the rows (click again to reverse); sorting is a synced trait.
import { el, formatValue } from "./_dom.js";

/** @typedef {{ key: string, label: string, format: string }} Column */

/**
 * @param {Record<string, unknown>[]} rows
 * @param {string | null} key
 * @param {boolean} descending
 */
function sortRows(rows, key, descending) {
  if (!key) return rows;
  const present = rows.filter((r) => r[key] !== null && r[key] !== undefined);
  const missing = rows.filter((r) => r[key] === null || r[key] === undefined);
  present.sort((a, b) => {
    const [x, y] = [a[key], b[key]];
    const order = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
    return descending ? -order : order;
  });
  return present.concat(missing);
}

/** @param {{ model: any, el: HTMLElement }} ctx */
function render({ model, el: root }) {
  const head = el("thead");
  const body = el("tbody");
  const table = el("table", "compound-table", [head, body]);
  const scroller = el("div", "compound-table-scroll", [table]);
  root.appendChild(scroller);

  const draw = () => {
    /** @type {Column[]} */
    const columns = model.get("columns");
    const sortBy = model.get("sort_by");
    const descending = model.get("descending");
    scroller.style.maxHeight = `${model.get("max_height")}px`;
    const headRow = el("tr");
    for (const column of columns) {
      const th = el("th", "compound-sortable", [column.label]);
      th.dataset.key = column.key;
      if (column.key === sortBy) th.dataset.sort = descending ? "desc" : "asc";
      th.addEventListener("click", () => {
        model.set("descending", column.key === sortBy ? !descending : false);
        model.set("sort_by", column.key);
        model.save_changes();
      });
      headRow.append(th);
    }
    head.replaceChildren(headRow);
    const rows = sortRows([...model.get("rows")], sortBy, descending);
    const rowKey = model.get("row_key");
    const selected = model.get("selected");
    body.replaceChildren(...rows.map((row) => {
      const tr = el("tr");
      if (rowKey) {
        tr.classList.add("compound-selectable");
        tr.dataset.row = String(row[rowKey]);
        if (selected !== null && row[rowKey] === selected) tr.classList.add("compound-selected");
        tr.addEventListener("click", () => {
          model.set("selected", row[rowKey]);
          model.save_changes();
        });
      }
      for (const column of columns) {
        const td = el("td", "", [formatValue(row[column.key], column.format)]);
        td.dataset.key = column.key;
        tr.append(td);
      }
      return tr;
    }));
  };
  draw();
  model.on("change", draw);
  return () => model.off("change", draw);
}

export default { render };
