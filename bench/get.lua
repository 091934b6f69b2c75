-- wrk: an authenticated GET (TOKEN from run.sh).
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
