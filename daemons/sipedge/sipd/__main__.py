"""`python -m sipedge.sipd`: the same as `sipedge-sipd`."""

from sipedge.sipd import main

main()
