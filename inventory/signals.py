"""
What the stock side announces to the inventory engine above it (STYLE.md §3). Sent after the commit that
recorded AvailabilityChange rows; the rows are the truth, the signal only makes the engine run sooner.
"""

from django.dispatch import Signal

# Stock, commitments, buffers or channel links moved in an organization. Arguments: organization_id.
availability_changed = Signal()
