"""The demo refund authorization in Spanish (a language variant of the English one)."""

from __future__ import annotations

REFUND_EXAMPLE_ES = """\
# Autorización de reembolso

Estimado/a {{ customer.name }}:

Le agradecemos que se haya puesto en contacto con nosotros en relación con su pedido \
**{{ order.number }}**. Hemos revisado su solicitud y estamos en condiciones de realizar el \
reembolso que se detalla a continuación. Le rogamos que lea esta autorización, compruebe que los \
datos son correctos y la firme para confirmar su conformidad.

## Datos del reembolso

| Concepto | Información |
| --- | --- |
| Cliente | {{ customer.name }} |
| Correo electrónico | {{ customer.email }} |
| Número de pedido | {{ order.number }} |
| Fecha del pedido | {{ order.date }} |
| Importe del reembolso | {{ refund.amount }} |
| Motivo del reembolso | {{ refund.reason | default("No indicado") }} |

## Cómo recibirá el reembolso

{% if refund.method | trim | lower == "card" %}
Abonaremos el importe del reembolso en la tarjeta con la que pagó este pedido. Normalmente \
tramitamos los reembolsos con tarjeta en un plazo de **5 días hábiles** desde que recibimos la \
autorización firmada. Es posible que la entidad emisora de su tarjeta tarde unos días más en \
reflejar el abono en su extracto; ese plazo no depende de nosotros.
{% elif refund.method | trim | lower == "bank transfer" %}
Le enviaremos el importe del reembolso mediante transferencia bancaria a la cuenta que nos ha \
facilitado. Normalmente realizamos las transferencias en un plazo de **5 días hábiles** desde \
que recibimos la autorización firmada. Compruebe sus datos bancarios con atención antes de \
firmar: si el pago se envía a un número de cuenta que se nos facilitó de forma incorrecta, es \
posible que no podamos recuperarlo.
{% else %}
Nos pondremos en contacto con usted en {{ customer.email }} para acordar la forma de pago del \
reembolso antes de enviar ningún importe.
{% endif %}

Le enviaremos una confirmación a {{ customer.email }} cuando hayamos realizado el reembolso.

## Antes de firmar

Compruebe que:

- su nombre, su correo electrónico y el número de pedido indicados arriba son correctos;
- el importe del reembolso es el que acordamos con usted;
- no ha recibido ya un reembolso por el mismo pedido, por ejemplo a través de su banco o de la \
entidad emisora de su tarjeta.

Si algún dato no es correcto, **no firme**. Póngase en contacto con quien se lo envió y \
corregiremos el documento y le enviaremos uno nuevo.

## Qué acepta al firmar

Al firmar esta autorización, usted confirma que:

1. los datos de este documento son correctos, según su leal saber y entender;
2. acepta el importe de reembolso indicado para la solicitud que se describe en este documento;
3. si más adelante recibe un segundo reembolso por el mismo pedido, nos lo comunicará para que \
podamos corregirlo.

Nada de lo dispuesto en esta autorización limita los derechos que le reconozca la normativa de \
protección de los consumidores aplicable.

---

*Conserve una copia de este documento. Si tiene alguna pregunta, póngase en contacto con \
nuestro servicio de atención al cliente e indique el pedido {{ order.number }}.*
"""
