"""When does a cron expression fire? CronSchedule answers, time zones and DST included."""

from datetime import datetime
from zoneinfo import ZoneInfo

from conveyor import CronSchedule

berlin = ZoneInfo("Europe/Berlin")
utc = ZoneInfo("UTC")

# Weekdays at 7:00 in Berlin. Clocks go forward on Sunday 30 March 2025.
schedule = CronSchedule("0 7 * * mon-fri", berlin)
for fire in schedule.upcoming(datetime(2025, 3, 27, tzinfo=berlin), 3):
    local = datetime.fromtimestamp(fire, berlin)
    print(f"{local:%a %d %b %H:%M} in Berlin = {datetime.fromtimestamp(fire, utc):%H:%M} UTC")

# Six fields: the sixth is seconds (SAQ's syntax), so this fires every 10 seconds.
every_10s = CronSchedule("* * * * * */10").upcoming(datetime(2025, 1, 1, tzinfo=utc), 3)
print("every 10 s:", ", ".join(f"{datetime.fromtimestamp(t, utc):%H:%M:%S}" for t in every_10s))
