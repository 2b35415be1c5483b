FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HIE_DATA_DIR=/var/lib/hie
WORKDIR /app

COPY requirements.lock ./
RUN pip install --no-cache-dir -r requirements.lock

COPY . .
RUN python manage.py collectstatic --no-input \
    && useradd --system --home /var/lib/hie hie \
    && mkdir -p /var/lib/hie && chown -R hie /var/lib/hie
USER hie

EXPOSE 8000
CMD ["gunicorn", "hie.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]
