"""The public page (公示): a year's published grades as a server-rendered Chinese page, with
its CSV and XLSX downloads.

Parents read grades on a page, often on a government intranet or a phone with scripts off, so
everything (search, sorting, earlier revisions, downloads) is a plain link or GET form, and the
page carries no script at all. Only what the public may see is ever read here: the latest
published revision of a year (or an earlier published one), and of each institution its name,
credit code and grade; never a draft, a finding, an explanation or a score.

`view` reads and selects, `render` turns a view into HTML, `downloads` into files; the routes
(`service.api.routes.public`) only wire them to URLs.
"""
