"""Small pieces every console page shares: status badges, read-only tables and preformatted text."""

from django.utils.html import format_html, format_html_join


def badge(colours, status, label):
    """A coloured status badge (CSS in templates/admin/base_site.html)."""
    return format_html(
        '<span class="sy-badge sy-badge-{}" data-status="{}">{}</span>',
        colours.get(status, "grey"),
        status,
        label,
    )


def html_table(headers, rows, *, empty, link=None):
    """A small read-only table for a change page (cells escaped unless already safe), and an optional
    `(url, label)` link under it."""
    head = format_html_join("", "<th>{}</th>", ((h,) for h in headers))
    body = format_html_join(
        "", "<tr>{}</tr>", ((format_html_join("", "<td>{}</td>", ((cell,) for cell in row)),) for row in rows)
    )
    if not body:
        body = format_html('<tr><td colspan="{}">{}</td></tr>', len(headers), empty)
    table = format_html(
        '<table class="sy-events"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>', head, body
    )
    if link:
        table = format_html('{}<p><a href="{}">{}</a></p>', table, *link)
    return table


def pre(text):
    return format_html('<pre class="sy-pre">{}</pre>', text)
