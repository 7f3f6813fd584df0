"""``pinnace search``: repositories of a registry's catalog, as docker lists Hub's."""

from __future__ import annotations

import click

from pinnace.cli import complete
from pinnace.cli.output import TEMPLATE_FORMAT_OPTION, as_json, is_template, table, templated
from pinnace.cli.root import get_engine
from pinnace.errors import InvalidConfig


@click.command()
@click.option("--limit", type=int, default=25, show_default=True, metavar="N",
              help="Most results (1 to 100).")
@click.option("-f", "--filter", "filters", multiple=True, metavar="KEY=VALUE",
              shell_complete=complete.filter_keys("search"),
              help="Filter: stars=N (at least), is-official=true|false, is-automated=true|false.")
@click.option("--no-trunc", is_flag=True, help="Do not truncate the description and tags.")
@click.option("--tls-verify/--no-tls-verify", default=None,
              help="Verify the registry's certificate [default: the source's configuration].")
@TEMPLATE_FORMAT_OPTION
@click.argument("term", metavar="[HOST/]TERM")
@click.pass_context
def search(ctx: click.Context, term: str, limit: int, filters: tuple[str, ...], no_trunc: bool,
           tls_verify: bool | None, fmt: str) -> None:
    """Search a registry's catalog for repositories whose name contains TERM (the
    registry source's default_registry when TERM names no HOST).

    Template fields: Name, Description, StarCount, IsOfficial, IsAutomated, Tags.
    """
    from pinnace.cli import listing_filters
    from pinnace.cli.rows import SearchRow, search_rows
    from pinnace.images.sources import TransferOptions

    if not 1 <= limit <= 100:
        raise InvalidConfig(f"invalid --limit {limit}: it must be between 1 and 100")
    wanted = listing_filters.search_results(filters)
    found = get_engine(ctx).sources.search(term, limit, TransferOptions(tls_verify=tls_verify))
    rows = search_rows(wanted.select(found), no_trunc)
    if fmt == "json":
        as_json([r._asdict() for r in rows])
    elif is_template(fmt):
        templated(fmt, rows, SearchRow)
    else:
        table(("NAME", "DESCRIPTION", "STARS", "OFFICIAL", "TAGS"),
              [(r.Name, r.Description, r.StarCount, "[OK]" if r.IsOfficial else "", r.Tags)
               for r in rows])
