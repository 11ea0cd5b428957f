"""B2BUA call control: routing, gateway switching, calls."""
