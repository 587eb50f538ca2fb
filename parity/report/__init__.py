"""Reports: self-contained offline HTML pages with inline SVG plots (audit, certificate, dashboard)."""
